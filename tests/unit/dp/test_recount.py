"""The publication folder as the ledger of last resort: spends recorded by bundles, re-counted per source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from release.dp import ledger as L
from release.dp.hooks import recount_spends
from release.dp.sources import BudgetConfig, Source

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SRC = Source(name="crime-records", unit="person", per_release={"epsilon": 2.0, "rho": None, "delta": None},
             per_period={"epsilon": 5.0, "rho": None, "delta": None}, period_days=30,
             min_per_release={"epsilon": 0.01, "rho": 5e-5})
CFG = BudgetConfig(config=Path("release.toml"), ledger=Path("ledger.sqlite"), sources={SRC.name: SRC})


def bundle(i: int, eps: float, day: float, source: str = "crime-records", unit: str = "person") -> tuple[Path, dict]:
    rid = f"r{i}"
    e: dict[str, Any] = {"seq": i + 1, "prev_hash": "x" * 64, "release_id": rid, "dataset": f"ds{i % 3}",
                         "source": source, "unit": unit, "epsilon": eps, "rho": 0.0, "delta": 0.0,
                         "created_utc": (T0 + timedelta(days=day)).isoformat(timespec="microseconds"),
                         "detail": {"outputs": []}}
    e["hash"] = L.entry_hash(e)
    return Path(f"ds/{rid}"), {"release_id": rid, "outputs": [{"budget": [{"epsilon": eps}]}],
                               "budget": {"entry": e}}


def brute_force_ok(spends: list[tuple[float, float]]) -> bool:
    """Every rolling 30-day window (ending at a release) within 5, every release within 2."""
    for eps, day in spends:
        if eps > 2.0 * (1 + 1e-9):
            return False
        window = sum(e for e, d in spends if day - 30 < d <= day)
        if window > 5.0 * (1 + 1e-9):
            return False
    return True


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5]), st.integers(0, 120)), max_size=12))
def test_recount_fails_exactly_when_some_window_passes_a_ceiling(spends: list[tuple[float, int]]) -> None:
    found = recount_spends([bundle(i, e, d) for i, (e, d) in enumerate(spends)], CFG)
    assert all(f.ok for f in found) == brute_force_ok([(e, float(d)) for e, d in spends])


def test_copies_count_once_forged_entries_and_unknown_sources_fail() -> None:
    one = bundle(0, 2.0, 0)
    assert all(f.ok for f in recount_spends([one, one, one], CFG))  # one release copied three times spends once
    forged = bundle(1, 2.0, 1)
    forged[1]["budget"]["entry"]["epsilon"] = 0.0  # hides its spend: the entry no longer hashes to itself
    assert "does not hash to itself" in " ".join(f.message for f in recount_spends([forged], CFG) if not f.ok)
    assert "which configuration release.toml does not register" in recount_spends([bundle(2, 1.0, 0, "other")],
                                                                                   CFG)[0].message
    assert "charge privacy unit 'household'" in recount_spends([bundle(3, 1.0, 0, unit="household")], CFG)[0].message
    no_entry = (Path("ds/x"), {"release_id": "x", "outputs": [{"budget": [{"epsilon": 1.0}]}], "budget": {}})
    assert not recount_spends([no_entry], CFG)[0].ok
    assert recount_spends([(Path("ds/y"), {"release_id": "y", "outputs": [{"budget": []}]})], CFG)[0].ok
