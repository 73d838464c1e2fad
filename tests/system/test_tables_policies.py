"""`table` policies: plan-time and input errors exit 2 with the rule broken; magnitude tables with dominance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from click.testing import CliRunner

from release.check import check_bundle
from release.cli import main
from tests.conftest import POLICIES

BASE = {
    "version": 1,
    "dataset": {"name": "firms", "title": "Turnover by region and sector", "publisher": "test"},
    "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86]},
    "input": {"record_id": "rid", "columns": {
        "rid": {"type": "string", "role": "record-id"},
        "firm": {"type": "string", "role": "privacy-unit"},
        "region": {"type": "category", "role": "quasi-identifier", "categories": ["North", "South", "East"]},
        "sector": {"type": "string", "role": "quasi-identifier"},
        "size": {"type": "integer", "role": "other"},
        "turnover": {"type": "float", "role": "sensitive", "required": False},
    }},
    "outputs": [{"name": "turnover", "kind": "table", "dimensions": ["region", "sector"],
                 "value_column": "turnover", "contributor": "firm",
                 "primary": {"threshold": 3, "dominance": {"n": 1, "k": 80}, "p_percent": 10},
                 "protection": {"absolute": 50, "relative": 0.2}, "cost": "value"}],
}


def _records() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for r in ["North", "South", "East"]:
        for s in ["Retail", "Food", "Tech", "Health"]:
            for f in range(6):
                rows.append({"firm": f"{r[0]}{s[0]}{f}", "region": r, "sector": s, "size": 1,
                             "turnover": float(rng.integers(50, 150))})
    # One giant dominates North/Tech: the (1, 80%) rule must catch it although the cell has 7 firms.
    rows.append({"firm": "GIANT", "region": "North", "sector": "Tech", "size": 9, "turnover": 3000.0})
    t = pd.DataFrame(rows)
    t.insert(0, "rid", [f"R{i:04d}" for i in range(len(t))])
    return t


def _write(tmp: Path, policy: dict) -> Path:
    p = tmp / "policy.yaml"
    p.write_text(yaml.safe_dump(policy, sort_keys=False))
    return p


def test_magnitude_table_dominance_suppressed_and_checked(tmp_path: Path) -> None:
    inp = tmp_path / "firms.csv"
    _records().to_csv(inp, index=False)
    r = CliRunner().invoke(main, ["run", str(_write(tmp_path, BASE)), "--input", str(inp), "--out",
                                  str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    bundle = next((tmp_path / "out" / "firms").iterdir())
    t = pd.read_csv(bundle / "turnover.csv", dtype=str, keep_default_na=False, na_values=[""])
    assert list(t.columns) == ["region", "sector", "value", "flag"]
    cell = t[(t.region == "North") & (t.sector == "Tech")].iloc[0]
    assert pd.isna(cell["value"]) and cell["flag"] == "suppressed"
    rep = json.loads((bundle / "report.json").read_text())
    fig = rep["outputs"][0]["figures"]["suppression"]
    # The giant dominates its own cell only (83% of it); the margins dilute it below 80%.
    assert fig["primary"] == 1 and fig["secondary"] >= 3
    assert fig["smallest_interval"] == "unbounded" or fig["smallest_interval"] >= 50
    assert check_bundle(bundle, {"allow_unapproved": True}).ok


def _exit_and_output(args: list[str]) -> tuple[int, str]:
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


def test_numeric_dimension_refused_at_plan_time(tmp_path: Path) -> None:
    pol = json.loads(json.dumps(BASE))
    pol["outputs"][0]["dimensions"] = ["region", "size"]
    code, out = _exit_and_output(["plan", str(_write(tmp_path, pol))])
    assert code == 2
    assert "dimension 'size' is integer" in out and "Traceback" not in out


def test_policy_key_errors(tmp_path: Path) -> None:
    pol = json.loads(json.dumps(BASE))
    del pol["outputs"][0]["value_column"]
    code, out = _exit_and_output(["plan", str(_write(tmp_path, pol))])
    assert code == 2 and "dominance and p_percent apply to magnitude tables" in out
    pol = json.loads(json.dumps(BASE))
    pol["outputs"][0]["tables"] = [{"dimensions": ["region"]}]
    code, out = _exit_and_output(["plan", str(_write(tmp_path, pol))])
    assert code == 2 and "either dimensions" in out


def test_missing_values_refused_unless_declared(tmp_path: Path) -> None:
    t = _records()
    t.loc[[3, 10], "turnover"] = np.nan
    inp = tmp_path / "firms.csv"
    t.to_csv(inp, index=False)
    out_dir = tmp_path / "out"
    code, out = _exit_and_output(["run", str(_write(tmp_path, BASE)), "--input", str(inp), "--out", str(out_dir)])
    assert code == 2
    assert "column 'turnover' has 2 missing value(s) (rows [4, 11])" in out and "na_means" in out
    assert not (out_dir / "firms").exists()
    pol = json.loads(json.dumps(BASE))
    pol["outputs"][0]["na_means"] = "suppressed-at-source"
    code, out = _exit_and_output(["run", str(_write(tmp_path, pol)), "--input", str(inp), "--out", str(out_dir)])
    assert code == 0, out


def test_bundled_table_policies_plan() -> None:
    for name in ("use-of-force-by-gender.yaml", "rbdc-use-of-force-gender.yaml"):
        code, out = _exit_and_output(["plan", str(POLICIES / name), "--json"])
        assert code == 0, out
        plan = json.loads(out[out.index("{"):])
        tab = next(o for o in plan["outputs"] if o["kind"] == "table")
        assert tab["columns"][-2:] == ["count", "flag"] and tab["required_interval"] == 5


def test_tables_sharing_margins_in_two_outputs_refused(tmp_path: Path) -> None:
    """Shared margins protected separately could be recomputed across outputs: the run refuses, exit 2."""
    pol = json.loads(json.dumps(BASE))
    second = dict(pol["outputs"][0], name="turnover-by-region", dimensions=["region"])
    pol["outputs"].append(second)
    inp = tmp_path / "firms.csv"
    _records().to_csv(inp, index=False)
    out_dir = tmp_path / "out"
    code, out = _exit_and_output(["run", str(_write(tmp_path, pol)), "--input", str(inp), "--out", str(out_dir)])
    assert code == 2 and "protected separately" in out and "Traceback" not in out
    assert not (out_dir / "firms").exists()
