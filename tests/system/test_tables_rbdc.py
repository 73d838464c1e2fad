"""Acceptance 1: the real published RBDC use-of-force table through a `table` policy (threshold 5), via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from release.check import check_bundle
from release.cli import main
from tests.conftest import POLICIES

POLICY = POLICIES / "rbdc-use-of-force-gender.yaml"
DIMS = ["Type_of_Incident", "Gender_of_People_Involved", "Perceived_Race_of_People_Involv"]


def _source(tps_dir: Path) -> pd.DataFrame:
    src = pd.read_csv(tps_dir / "rbdc_uof_gender.csv", dtype=str, keep_default_na=False)
    for d in DIMS:
        src[d] = src[d].str.strip()
    src["n"] = pd.to_numeric(src["Incident_Count"].replace("NA", np.nan))
    return src


def _truth(src: pd.DataFrame, row: pd.Series) -> float:
    """True value of a published cell (margins included); NaN when a withheld (NA) cell enters it."""
    m = pd.Series(True, index=src.index)
    for d in DIMS:
        if row[d] != "Total":
            m &= src[d] == row[d]
    part = src.loc[m, "n"]
    return float("nan") if part.isna().any() else float(part.sum())


def test_rbdc_table_protected_published_and_checked(tps_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(POLICY), "--input", str(tps_dir / "rbdc_uof_gender.csv"),
                                  "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    bundle = next((out / "rbdc-use-of-force-gender").iterdir())
    pub = pd.read_csv(bundle / "incidents-by-gender-race.csv", dtype=str, keep_default_na=False, na_values=[""])
    src = _source(tps_dir)
    assert len(pub) == 3 * 4 * 9  # 2 x 3 x 8 cells plus every margin
    truth = pub.apply(lambda row: _truth(src, row), axis=1)
    published = pd.to_numeric(pub["count"])
    suppressed = pub["flag"].fillna("") == "suppressed"
    assert (published.isna() == suppressed).all()
    # Every cell under 5 (margins included) and every withheld cell is suppressed ...
    small = (truth > 0) & (truth < 5)
    assert small.sum() >= 8, "the source has cells of 1, 2 and 3"
    assert suppressed[small].all()
    assert suppressed[truth.isna()].all()
    # ... and what is published is the true count.
    ok = ~suppressed
    assert (published[ok] == truth[ok]).all()
    rep = json.loads((bundle / "report.json").read_text())
    assert rep["verdict"] == "pass"
    fig = rep["outputs"][0]["figures"]["suppression"]
    assert fig["primary"] == int(small.sum())
    assert fig["secondary"] > 0
    assert fig["smallest_interval"] >= fig["required_interval"] == 5
    assert fig["suppressed_cells"] == int(suppressed.sum())
    # The LP audit: no suppressed cell (so no primary one) can be narrowed below 5; each interval holds the truth.
    for a in fig["audit"]:
        hi = np.inf if a["upper"] is None else a["upper"]
        assert hi - a["lower"] >= 5
        row = pd.Series({d: a["cell"][d] for d in DIMS})
        t = _truth(src, row)
        assert np.isnan(t) or a["lower"] <= t <= hi
    # The public report never shows a suppressed cell's true value as a figure.
    assert "suppressed_total" not in json.dumps(rep)
    chk = check_bundle(bundle, {"allow_unapproved": True})
    assert chk.ok, [f.to_json() for f in chk.findings if not f.ok]
    assert {"table-audit", "table-threshold", "table-additivity"} <= {f.check for f in chk.findings}
