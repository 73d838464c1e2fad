"""Acceptance 3 of docs/series.md: a cumulative pair where differencing exposes a cell is caught and protected;
an independent LP (scipy's linprog) over both published tables confirms the intervals."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from release.check import check_bundle
from release.engine import run_release
from tests.conftest import UNAPPROVED
from tests.system.mini import write_policy

THRESHOLD = 5
MARCH = {("D1", "X"): 0, ("D1", "Y"): 40, ("D2", "X"): 30, ("D2", "Y"): 30}
# June: 3 records in D1/X (a primary cell), none in D1/Y: June's D1/Y can only be >= March's 40.
JUNE = {("D1", "X"): 3, ("D1", "Y"): 40, ("D2", "X"): 33, ("D2", "Y"): 35}


def policy(series: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "ytd", "kind": "table", "dimensions": ["division", "category"],
                           "primary": {"threshold": THRESHOLD}}
    if series:
        out["series"] = series
    return {
        "version": 1,
        "dataset": {"name": "ytd-counts", "title": "Year to date", "publisher": "test"},
        "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86]},
        "input": {"record_id": "record_id", "columns": {
            "record_id": {"type": "string", "role": "record-id"},
            "division": {"type": "category", "role": "area", "categories": ["D1", "D2"]},
            "category": {"type": "category", "role": "quasi-identifier", "categories": ["X", "Y"]}}},
        "outputs": [out],
        "series": {"source": "crime-records", "secret_env": "RELEASE_PSEUDONYM_KEY"},
    }


def records(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [(d, c) for (d, c), n in counts.items() for _ in range(n)]
    return pd.DataFrame({"record_id": [f"R{i:04d}" for i in range(len(rows))],
                         "division": [r[0] for r in rows], "category": [r[1] for r in rows]})


def run(tmp: Path, pol: dict[str, Any], counts: dict[tuple[str, str], int], out: Path, tag: str) -> Path:
    p = write_policy(tmp / f"{tag}.yaml", pol)
    rec = tmp / f"{tag}.csv"
    records(counts).to_csv(rec, index=False)
    res = run_release(p, rec, out)
    assert res.bundle is not None
    return res.bundle


def intervals(tables: list[pd.DataFrame]) -> dict[tuple[int, str, str], tuple[float, float]]:
    """Independent attacker: min/max of every suppressed cell of every table, given both tables' published
    values, their additivity, x >= 0 and the cumulative order x_june >= x_march, cell by cell (scipy linprog)."""
    cells = [(t, d, c) for t in range(len(tables)) for d, c in product(["D1", "D2", "Total"], ["X", "Y", "Total"])]
    idx = {k: i for i, k in enumerate(cells)}
    eq, rhs = [], []
    for t, frame in enumerate(tables):
        val = {(r.division, r.category): r.count for r in frame.itertuples()}
        for d, c in product(["D1", "D2", "Total"], ["X", "Y", "Total"]):
            v = val[(d, c)]
            if not pd.isna(v):
                row = np.zeros(len(cells))
                row[idx[(t, d, c)]] = 1
                eq.append(row)
                rhs.append(float(v))
        for d in ["D1", "D2", "Total"]:  # rows add up to their total
            row = np.zeros(len(cells))
            row[[idx[(t, d, "X")], idx[(t, d, "Y")]]] = 1
            row[idx[(t, d, "Total")]] = -1
            eq.append(row)
            rhs.append(0.0)
        for c in ["X", "Y", "Total"]:
            row = np.zeros(len(cells))
            row[[idx[(t, "D1", c)], idx[(t, "D2", c)]]] = 1
            row[idx[(t, "Total", c)]] = -1
            eq.append(row)
            rhs.append(0.0)
    ub, ubr = [], []
    for t in range(1, len(tables)):
        for d, c in product(["D1", "D2", "Total"], ["X", "Y", "Total"]):
            row = np.zeros(len(cells))  # x_earlier - x_later <= 0
            row[idx[(t - 1, d, c)]] = 1
            row[idx[(t, d, c)]] = -1
            ub.append(row)
            ubr.append(0.0)
    out = {}
    for t, frame in enumerate(tables):
        for r in frame.itertuples():
            if pd.isna(r.count):
                obj = np.zeros(len(cells))
                obj[idx[(t, r.division, r.category)]] = 1
                got = []
                for sign in (1, -1):
                    sol = linprog(sign * obj, A_eq=np.array(eq), b_eq=rhs, A_ub=np.array(ub) if ub else None,
                                  b_ub=ubr if ub else None, bounds=(0, None), method="highs")
                    assert sol.status == 0
                    got.append(sign * sol.fun)
                out[(t, r.division, r.category)] = (got[0], got[1])
    return out


def published(bundle: Path) -> pd.DataFrame:
    return pd.read_csv(bundle / "ytd.csv", dtype={"division": str, "category": str})


def test_differencing_a_cumulative_pair_is_caught_and_protected(tmp_path: Path) -> None:
    # Without the series declaration the June table is protected alone: differencing with March exposes D1/X.
    alone = tmp_path / "alone"
    march_a = run(tmp_path, policy(None), MARCH, alone, "m-alone")
    june_a = run(tmp_path, policy(None), JUNE, alone, "j-alone")
    iv = intervals([published(march_a), published(june_a)])
    assert min(hi - lo for hi, lo in [(h, lo) for lo, h in iv.values()]) < THRESHOLD
    lo, hi = iv[(1, "D1", "X")]
    assert hi - lo < THRESHOLD  # the primary cell itself: 3 is pinned within [0, 3]

    # Declared cumulative: the June release is audited with March and suppresses more until differencing fails.
    pub = tmp_path / "pub"
    march = run(tmp_path, policy("cumulative"), MARCH, pub, "m")
    june = run(tmp_path, policy("cumulative"), JUNE, pub, "j")
    rep = json.loads((june / "report.json").read_text())
    cum = rep["outputs"][0]["figures"]["series"]["cumulative"]
    assert cum["earlier"] == [f"ytd-counts/{march.name}/ytd.csv"]
    assert cum["smallest_interval"] is None or cum["smallest_interval"] >= THRESHOLD
    assert cum["cells_suppressed_for_series"] > 0
    assert any(f["check"] == "series-cumulative" and f["ok"] for f in rep["findings"])
    iv = intervals([published(march), published(june)])
    assert iv, "something is suppressed"
    for (t, d, c), (lo, hi) in iv.items():
        assert np.floor(hi + 1e-6) - np.ceil(lo - 1e-6) >= THRESHOLD, (t, d, c, lo, hi)
    # The engine's joint audit agrees with the independent LP on the smallest interval.
    smallest = min(np.floor(hi + 1e-6) - np.ceil(lo - 1e-6) for lo, hi in iv.values())
    assert cum["smallest_interval"] == (None if np.isinf(smallest) else smallest)
    # `release check` re-finds March in the folder and recomputes the joint audit from the files.
    res = check_bundle(june, UNAPPROVED)
    assert res.ok, [f.message for f in res.findings if not f.ok]
    assert "cumulative table audit" in (june / "report.html").read_text()


def test_a_falling_running_total_is_not_cumulative(tmp_path: Path) -> None:
    pub = tmp_path / "pub"
    run(tmp_path, policy("cumulative"), JUNE, pub, "j")
    # A later table lower than the earlier one cannot be a running total: the joint audit says so and blocks.
    import pytest

    from release.errors import BlockedError

    with pytest.raises(BlockedError) as e:
        run(tmp_path, policy("cumulative"), {**MARCH, ("D1", "Y"): 20}, pub, "m")
    assert any(f["check"] == "series-cumulative" and not f["ok"] for f in e.value.report["findings"])  # type: ignore[attr-defined]


def test_a_cumulative_table_needs_a_series_source(tmp_path: Path) -> None:
    import pytest

    from release.errors import PolicyError

    pol = policy("cumulative")
    del pol["series"]
    with pytest.raises(PolicyError, match="series.source"):
        run(tmp_path, pol, MARCH, tmp_path / "pub", "m")


def test_primary_cells_keep_their_relative_protection_against_differencing(tmp_path: Path) -> None:
    pub = tmp_path / "pub"
    pol = policy("cumulative")
    pol["outputs"][0]["protection"] = {"relative": 3.0}  # D1/X (3) needs an interval at least 9 wide
    march = run(tmp_path, pol, MARCH, pub, "m")
    june = run(tmp_path, pol, JUNE, pub, "j")
    lo, hi = intervals([published(march), published(june)])[(1, "D1", "X")]
    assert np.floor(hi + 1e-6) - np.ceil(lo - 1e-6) >= 9
