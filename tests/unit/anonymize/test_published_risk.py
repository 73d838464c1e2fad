"""Re-identification over everything published: a k step on some columns does not hide the areas,
times and points published beside them; an output without a k step gets the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from release.engine import run_release
from release.errors import BlockedError
from tests.system.mini import mini_policy, write_policy

K_STEP = {"type": "k-anonymity", "k": 3, "max_suppression": 0.0,
          "quasi_identifiers": {"category": {}, "age": {"widths": [10, 50]}}}


def records(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    df = pd.DataFrame({
        "record_id": [f"R{i:05d}" for i in range(n)],
        "occurred": "2024-03-01T10:00:00",
        "category": rng.choice(["Assault", "Robbery", "Theft"], n),
        "age": rng.integers(20, 40, n),
        "division": rng.choice(["D11", "D12"], n),
        # At most sixty distinct points, most shared by several records.
        "latitude": np.round(43.65 + rng.integers(0, 20, n) * 0.001, 6),
        "longitude": np.round(-79.40 - rng.integers(0, 3, n) * 0.001, 6),
        "victim_name": "x", "person_id": [f"P{i}" for i in range(n)],
    })
    df.loc[0, "division"] = "D99"  # a neighbourhood with one record: unique on what is published
    return df


def policy(tmp: Path, steps: list, gate: dict | None = None, columns: list[str] | None = None) -> Path:
    cols = columns or ["category", "age", "division", "latitude", "longitude"]
    p = mini_policy(steps=[{"type": "drop", "roles": ["direct-identifier"]}, *steps],
                    outputs=[{"name": "records", "kind": "records", "columns": cols}], gate=gate or {})
    return write_policy(tmp / "p.yaml", p)


def run(tmp: Path, pol: Path) -> dict:
    data = tmp / "in.csv"
    records().to_csv(data, index=False)
    res = run_release(pol, data, tmp / "out", seed=1)
    return json.loads((res.bundle / "report.json").read_text())


def test_k_step_on_other_columns_reports_k_over_every_published_identifying_column(tmp_path: Path) -> None:
    rep = run(tmp_path, policy(tmp_path, [K_STEP]))
    anon = rep["outputs"][0]["figures"]["anonymity"]
    assert anon["k"] >= 3 and anon["quasi_identifiers"] == ["category", "age"]
    pub = rep["outputs"][0]["figures"]["reidentification"]
    assert pub["columns"] == ["category", "age", "division", "latitude", "longitude"]
    assert pub["beyond_k_step"] == ["division", "latitude", "longitude"]
    assert pub["k"] == 1 and pub["sample_uniques"]["records"] >= 1
    assert pub["without_point"]["columns"] == ["category", "age", "division"]
    assert pub["without_point"]["sample_uniques"]["records"] >= 1  # the planted neighbourhood
    assert pub["sample_uniques"]["records"] >= pub["without_point"]["sample_uniques"]["records"]
    assert "unique on what the public can see" in pub["statement"]
    assert "covers category, age only" in pub["statement"]
    html = (next((tmp_path / "out").rglob("report.html"))).read_text()
    assert "Read this first" in html and "unique on what the public can see" in html
    assert "Re-identification over everything published" in html


def test_gate_blocks_on_the_planted_unique_neighbourhood(tmp_path: Path) -> None:
    pol = policy(tmp_path, [K_STEP], gate={"min_k_published": 2, "max_sample_uniques_share": 0.0},
                 columns=["category", "age", "division"])
    with pytest.raises(BlockedError) as e:
        run(tmp_path, pol)
    failed = {f["check"]: f for f in e.value.report["findings"] if not f["ok"]}  # type: ignore[attr-defined]
    assert failed["k-anonymity-published"]["figure"] == 1
    assert failed["sample-uniques"]["figure"] > 0
    assert not list((tmp_path / "out").rglob("report.json"))
    # The same policy with the neighbourhood area-only passes: the gate judged the published columns.
    pol = policy(tmp_path, [K_STEP], gate={"min_k_published": 2}, columns=["category", "age"])
    rep = run(tmp_path, pol)
    f = next(f for f in rep["findings"] if f["check"] == "k-anonymity-published")
    assert f["ok"] and f["figure"] >= 3


def test_output_without_k_step_gets_uniqueness_figures(tmp_path: Path) -> None:
    rep = run(tmp_path, policy(tmp_path, []))
    figs = rep["outputs"][0]["figures"]
    assert "anonymity" not in figs  # no k step, no gate on the k step's figures
    pub = figs["reidentification"]
    assert pub["records"] == 300 and pub["k"] == 1
    assert 0 < pub["sample_uniques"]["share"] <= 1
    assert pub["prosecutor"]["highest"] == 1.0


def test_release_check_recomputes_the_published_figures(tmp_path: Path) -> None:
    from release.check import check_bundle

    pol = policy(tmp_path, [K_STEP], gate={"max_sample_uniques_share": 0.9})
    rep = run(tmp_path, pol)
    bundle = next((tmp_path / "out").rglob("manifest.json")).parent
    res = check_bundle(bundle)
    f = next(f for f in res.findings if f.check == "sample-uniques")
    want = rep["outputs"][0]["figures"]["reidentification"]["sample_uniques"]["share"]
    assert f.ok and f.figure == want
