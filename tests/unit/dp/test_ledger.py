"""The budget ledger: caps per release and per period, the hash chain, atomic reservation under concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from release.dp import ledger as L
from release.errors import BlockedError

CAPS = L.Caps(per_release={"epsilon": 1.0}, per_period={"epsilon": 2.0}, period_days=30)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _spend(eps: float) -> list[dict]:
    return [{"output": "t", "mechanism": "laplace", "epsilon": eps}]


def reserve(p: Path, rid: str, eps: list[dict], caps: L.Caps = CAPS, now: datetime = NOW, source: str = "src",
            **kw: object) -> dict:
    return L.reserve(p, source=source, unit="person", dataset="ds", release_id=rid, spends=eps, caps=caps, now=now,
                     **kw)  # type: ignore[arg-type]


def test_reserve_until_the_period_cap(tmp_path: Path) -> None:
    p = tmp_path / "l.sqlite"
    r1 = reserve(p, "r1", _spend(0.8))
    assert r1["spent_in_period_before"]["epsilon"] == 0 and r1["spent_in_period_after"]["epsilon"] == 0.8
    reserve(p, "r2", _spend(0.8))
    with pytest.raises(BlockedError) as e:
        reserve(p, "r3", _spend(0.8), reset_hint="wait for the period")
    text = e.value.render()
    assert "epsilon_per_period cap 2" in text and "1.6 already spent" in text and "asks 0.8" in text
    assert "wait for the period" in text
    assert [s["release_id"] for s in L.history(p)] == ["r1", "r2"]  # nothing recorded for the refused run
    # The rolling period: 31 days later the old spends no longer count.
    reserve(p, "r4", _spend(0.8), now=NOW + timedelta(days=31))
    # Other sources have their own budget.
    reserve(p, "r5", _spend(0.8), source="other")


def test_per_release_cap(tmp_path: Path) -> None:
    with pytest.raises(BlockedError, match="epsilon_per_release cap 1"):
        reserve(tmp_path / "l.sqlite", "r1", _spend(0.6) + _spend(0.6))
    assert L.history(tmp_path / "l.sqlite") == []


def test_entries_chain_and_the_record_names_its_entry(tmp_path: Path) -> None:
    p = tmp_path / "l.sqlite"
    a = reserve(p, "r1", _spend(0.5))
    b = reserve(p, "r2", _spend(0.5))
    assert a["entry"]["prev_hash"] == L.genesis_hash(a["ledger_id"]) == a["chain_head_seen"]
    assert b["entry"]["prev_hash"] == a["entry"]["hash"] == b["chain_head_seen"]
    assert L.entry_hash(b["entry"]) == b["entry"]["hash"]
    lid, entries, problems = L.read(p)
    assert lid == a["ledger_id"] and not problems and [e["hash"] for e in entries] == [a["entry"]["hash"],
                                                                                      b["entry"]["hash"]]


@pytest.mark.parametrize(("sql", "problem"), [
    ("UPDATE entries SET epsilon = 0.1 WHERE seq = 1", "entry 1: its content does not match its hash"),
    ("UPDATE entries SET source = 'elsewhere' WHERE seq = 2", "entry 2: its content does not match its hash"),
    ("DELETE FROM entries WHERE seq = 1", "entry 2: expected sequence number 1"),
    ("UPDATE meta SET value = 'fresh' WHERE key = 'ledger_id'", "entry 1: its previous hash is not the hash"),
])
def test_any_edit_breaks_the_chain_and_refuses(tmp_path: Path, sql: str, problem: str) -> None:
    p = tmp_path / "l.sqlite"
    reserve(p, "r1", _spend(0.5))
    reserve(p, "r2", _spend(0.5))
    with sqlite3.connect(p) as con:
        con.execute(sql)
    assert problem in " ".join(L.read(p)[2])
    with pytest.raises(L.ChainBroken, match="hash chain is broken"):
        reserve(p, "r3", _spend(0.1))


def test_published_spends_must_be_in_the_ledger(tmp_path: Path) -> None:
    p = tmp_path / "l.sqlite"
    rec = reserve(p, "r1", _spend(0.5))
    pub = [{"bundle": "ds/r1", "ledger_id": rec["ledger_id"], "entry": rec["entry"]}]
    reserve(p, "r2", _spend(0.5), published=pub)  # held: fine
    p.unlink()
    with pytest.raises(BlockedError, match="1 published bundle"):
        reserve(p, "r3", _spend(0.1), published=pub)
    assert L.history(p) == []


def _worker(args: tuple[str, int]) -> bool:
    path, i = args
    try:
        L.reserve(Path(path), source="src", unit="person", dataset="ds", release_id=f"r{i}", spends=_spend(0.3),
                  caps=L.Caps({"epsilon": 1.0}, {"epsilon": 1.0}, 365), now=datetime.now(UTC))
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
    _, entries, problems = L.read(path)
    assert len(entries) == 3 and not problems  # the chain stays intact under contention
