"""Acceptance 1 of docs/series.md: a record keeps its donut point in every release and every dataset of its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from release.engine import run_release
from release.errors import PolicyError
from tests.system.mini import mini_policy, mini_records, write_policy

SERIES = {"source": "crime-records", "secret_env": "RELEASE_PSEUDONYM_KEY"}


def donut_policy(name: str = "crimes", series: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    steps = [
        {"type": "drop", "roles": ["direct-identifier"]},
        {"type": "geomask-donut", "min_distance": 50, "max_distance": 300},
        # The pseudonym the test joins on: a declared link group shared by both datasets.
        {"type": "pseudonymize", "columns": ["record_id"], "method": "hmac", "secret_env": "RELEASE_PSEUDONYM_KEY",
         "link_group": "crime-events", "prefix": "GO-"},
        {"type": "pseudonymize", "columns": ["person_id"], "method": "random"},
    ]
    p = mini_policy(steps=steps, outputs=[{"name": "records", "kind": "records",
                                           "columns": ["record_id", "category", "latitude", "longitude"]}])
    p["dataset"]["name"] = name
    if series is not False:
        p["series"] = series or SERIES
    p.update(extra)
    return p


def release(tmp: Path, pol: dict[str, Any], frame: pd.DataFrame, tag: str, out: Path) -> pd.DataFrame:
    policy = write_policy(tmp / f"{tag}.yaml", pol)
    rec = tmp / f"{tag}.csv"
    frame.to_csv(rec, index=False)
    res = run_release(policy, rec, out, seed=None)
    assert res.bundle is not None
    return pd.read_csv(res.bundle / "records.csv", dtype={"record_id": str})


def test_three_releases_and_an_overlapping_dataset_publish_the_same_point_for_every_shared_record(
        tmp_path: Path) -> None:
    base = mini_records(300, seed=4)
    out = tmp_path / "pub"
    # Month 1, month 2 (grown), month 3 (grown, one record corrected elsewhere): the same records each time.
    r1 = release(tmp_path, donut_policy(), base.iloc[:200], "m1", out)
    r2 = release(tmp_path, donut_policy(), base.iloc[:250], "m2", out)
    r3 = release(tmp_path, donut_policy(), base.assign(category="Theft"), "m3", out)
    # Another dataset drawn from the same source (a subset, renamed, other columns) publishes the same points.
    other = donut_policy("shootings")
    other["outputs"][0]["columns"] = ["record_id", "latitude", "longitude"]
    r4 = release(tmp_path, other, base.iloc[100:300], "s1", out)
    joined = r1
    for i, r in enumerate((r2, r3, r4), start=2):
        joined = joined.merge(r[["record_id", "latitude", "longitude"]], on="record_id", suffixes=("", f"_{i}"))
    assert len(joined) == 100  # records 100-199 are in all four releases
    for i in (2, 3, 4):
        np.testing.assert_array_equal(joined["latitude"], joined[f"latitude_{i}"])
        np.testing.assert_array_equal(joined["longitude"], joined[f"longitude_{i}"])
    # ... and every pair of releases agrees on every record they share.
    for a, b in ((r1, r2), (r2, r3), (r1, r4), (r3, r4)):
        m = a.merge(b, on="record_id")
        assert len(m) >= 100
        assert (m.latitude_x == m.latitude_y).all() and (m.longitude_x == m.longitude_y).all()
    # The points did move (the donut ran): no published point is a true one.
    truth = base.assign(record_id=None)
    assert not np.isin(r1.latitude.round(6), truth.latitude.round(6)).any()


def test_one_off_release_draws_afresh_and_says_so(tmp_path: Path) -> None:
    base = mini_records(120, seed=5)
    out = tmp_path / "pub"
    pol = donut_policy("once", series={"one_off": True})
    a = release(tmp_path, pol, base, "a", out)
    b = release(tmp_path, pol, base, "b", out)
    m = a.merge(b, on="record_id")
    # Fresh offsets: (almost) no record keeps its point, which is why one_off must be declared.
    assert (m.latitude_x == m.latitude_y).mean() < 0.05
    bundle = sorted((out / "once").iterdir())[-1]
    import json

    man = json.loads((bundle / "manifest.json").read_text())
    rep = json.loads((bundle / "report.json").read_text())
    assert man["masks"]["per_record"] == "one-off"
    donut = next(s for s in rep["steps"] if s["type"] == "geomask-donut")
    assert "one-off" in donut["randomness"]


def test_keyed_donut_needs_a_source_or_a_declared_one_off(tmp_path: Path) -> None:
    base = mini_records(30, seed=6)
    with pytest.raises(PolicyError, match="series.source"):
        release(tmp_path, donut_policy(series=False), base, "x", tmp_path / "pub")


def test_unregistered_source_is_refused_before_reading(tmp_path: Path) -> None:
    base = mini_records(30, seed=6)
    with pytest.raises(PolicyError, match="not a source registered"):
        release(tmp_path, donut_policy(series={**SERIES, "source": "nowhere"}), base, "x", tmp_path / "pub")


def _check_all(out: Path) -> dict[str, Any]:
    import json

    from click.testing import CliRunner

    from release.cli import main

    r = CliRunner().invoke(main, ["check-all", str(out), "--allow-unapproved", "--json"])
    return json.loads(r.output)


def test_check_all_confirms_every_record_keeps_its_point_across_the_source(tmp_path: Path) -> None:
    base = mini_records(150, seed=8)
    out = tmp_path / "pub"
    release(tmp_path, donut_policy(), base.iloc[:100], "m1", out)
    release(tmp_path, donut_policy("renamed"), base, "m2", out)
    got = _check_all(out)
    masks = [f for f in got["folder_findings"] if f["check"] == "series-masks"]
    assert masks and all(f["ok"] for f in masks), masks
    assert any("every one of 100 joined record(s) keeps its point" in f["message"] for f in masks)


def test_check_all_catches_two_one_off_releases_of_the_same_records(tmp_path: Path) -> None:
    base = mini_records(120, seed=9)
    out = tmp_path / "pub"
    pol = donut_policy("once", series={"one_off": True, "source": "crime-records"})
    release(tmp_path, pol, base, "a", out)
    release(tmp_path, pol, base, "b", out)
    got = _check_all(out)
    bad = [f for f in got["folder_findings"] if f["check"] == "series-masks" and not f["ok"]]
    assert bad and bad[0]["figure"] > 100
    assert not got["ok"]
