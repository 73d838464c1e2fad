"""The budget ledger: caps per release and per period, atomic reservation under concurrency."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from release.dp import ledger as L
from release.errors import BlockedError

CAPS = L.Caps(per_release={"epsilon": 1.0}, per_period={"epsilon": 2.0}, period_days=30)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _spend(eps: float) -> list[dict]:
    return [{"output": "t", "mechanism": "laplace", "epsilon": eps}]


def test_reserve_until_the_period_cap(tmp_path: Path) -> None:
    p = tmp_path / "l.sqlite"
    r1 = L.reserve(p, "ds", "pid", "r1", _spend(0.8), CAPS, NOW)
    assert r1["spent_in_period_before"]["epsilon"] == 0 and r1["spent_in_period_after"]["epsilon"] == 0.8
    L.reserve(p, "ds", "pid", "r2", _spend(0.8), CAPS, NOW)
    with pytest.raises(BlockedError) as e:
        L.reserve(p, "ds", "pid", "r3", _spend(0.8), CAPS, NOW, reset_hint="use a new ledger")
    text = e.value.render()
    assert "epsilon_per_period cap 2" in text and "1.6 already spent" in text and "asks 0.8" in text
    assert "use a new ledger" in text
    assert [s["release_id"] for s in L.history(p)] == ["r1", "r2"]  # nothing recorded for the refused run
    # The rolling period: 31 days later the old spends no longer count.
    L.reserve(p, "ds", "pid", "r4", _spend(0.8), CAPS, NOW + timedelta(days=31))
    # Other datasets have their own budget.
    L.reserve(p, "other", "pid", "r5", _spend(0.8), CAPS, NOW)


def test_per_release_cap(tmp_path: Path) -> None:
    with pytest.raises(BlockedError, match="epsilon_per_release cap 1"):
        L.reserve(tmp_path / "l.sqlite", "ds", "pid", "r1", _spend(0.6) + _spend(0.6), CAPS, NOW)
    assert L.history(tmp_path / "l.sqlite") == []


def _worker(args: tuple[str, int]) -> bool:
    path, i = args
    try:
        L.reserve(Path(path), "ds", "pid", f"r{i}", _spend(0.3), L.Caps({"epsilon": 1.0}, {"epsilon": 1.0}, 365),
                  datetime.now(UTC))
        return True
    except BlockedError:
        return False


@pytest.mark.parametrize("round_", range(3))
def test_eight_processes_never_pass_the_cap(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "l.sqlite"
    ctx = mp.get_context("fork")
    with ctx.Pool(8) as pool:
        ok = pool.map(_worker, [(str(path), i) for i in range(8)])
    spent = sum(s["epsilon"] for s in L.history(path))
    assert spent <= 1.0 + 1e-9
    assert sum(ok) == 3  # 3 x 0.3 fits under 1.0, a fourth would not
    assert len(L.history(path)) == 3
