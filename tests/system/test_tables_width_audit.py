"""A `table` bundle whose audit proves widths (every component forced onto the width path):
report.json says which intervals are exact, `release check` proves the same from the files,
`--exact-audit` computes every exact interval, and a complementary cell filled back in fails."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from click.testing import CliRunner

import release.tables.audit as audit_mod
import release.tables.output as output_mod
from release.cli import main
from release.synth import synth_use_of_force, write_records
from tests.conftest import POLICIES
from tests.system.report_demo import rehash

POLICY = POLICIES / "use-of-force-by-gender.yaml"
STEM = "use-of-force-by-gender_race"


@pytest.fixture(scope="module")
def width_path() -> Iterator[None]:
    # Every component of these small tables takes the proof-of-width path (default: 3,000 cells).
    with mock.patch.object(audit_mod, "WIDTH_PROOF_CELLS", 1):
        yield


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, width_path: None) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("tables-width")
    inp = base / "uof.parquet"
    records = synth_use_of_force(1500)
    write_records(records, inp)
    r = CliRunner().invoke(main, ["run", str(POLICY), "--input", str(inp), "--out", str(base / "out")])
    assert r.exit_code == 0, r.output
    return {"bundle": next((base / "out" / "use-of-force-by-gender").iterdir()), "records": records}


def _check(bundle: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    r = CliRunner().invoke(main, ["check", "--allow-unapproved", *extra, str(bundle), "--json"])
    payload = json.loads(r.output[r.output.index("{"):])
    return r.exit_code, payload["findings"]


def _audit_figure(findings: list[dict[str, Any]]) -> float:
    return next(f["figure"] for f in findings if f["check"] == "table-audit")


def test_report_says_which_intervals_are_proved(released: dict[str, Any]) -> None:
    rep = json.loads((released["bundle"] / "report.json").read_text())
    fig = rep["outputs"][0]["figures"]["suppression"]
    assert fig["proved_intervals"] > 0
    assert fig["exact_intervals"] + fig["proved_intervals"] == fig["suppressed_cells"]
    assert sum(1 for a in fig["audit"] if a["exact"] is False) == fig["proved_intervals"]
    assert sum(1 for a in fig["audit"] if a["exact"] is True) == fig["exact_intervals"]
    assert fig["smallest_interval"] >= fig["required_interval"]
    for t in fig["tables"]:
        assert t["exact_intervals"] + t["proved_intervals"] == t["suppressed_cells"]
    # The plain-language summary says the width is a lower bound, not the attacker's best.
    html = (released["bundle"] / "report.html").read_text()
    assert "wide at least" in html and "wide at best" not in html


def test_check_proves_the_width_and_exact_audit_gives_exact_intervals(released: dict[str, Any]) -> None:
    code, findings = _check(released["bundle"])
    assert code == 0 and all(f["ok"] for f in findings)
    with mock.patch.object(output_mod, "attack", wraps=audit_mod.attack) as spy:
        code_x, findings_x = _check(released["bundle"], "--exact-audit")
    assert code_x == 0 and all(f["ok"] for f in findings_x), [f for f in findings_x if not f["ok"]]
    # The audit the report states (its figures must match report.json), then every exact interval.
    assert spy.call_count == 2 and "need" in spy.call_args_list[0].kwargs and "need" not in spy.call_args.kwargs
    msg = next(f["message"] for f in findings if f["check"] == "table-audit")
    msg_x = next(f["message"] for f in findings_x if f["check"] == "table-audit")
    assert "smallest proved interval" in msg and "proved" not in msg_x
    # A proved width is a lower bound of the exact one.
    assert _audit_figure(findings_x) >= _audit_figure(findings) >= 5


def test_secondary_filled_back_in_fails_the_width_audit(released: dict[str, Any], tmp_path: Path) -> None:
    """A complementary cell published with its true value (not itself small): only the audit
    can tell, and the width proof does (a cell it cannot prove wide gets its exact interval)."""
    records = released["records"]
    dims = ["gender", "perceived_race"]
    t = pd.read_csv(released["bundle"] / f"{STEM}.csv", dtype=str, keep_default_na=False, na_values=[""])

    def truth(i: int) -> int:
        m = pd.Series(True, index=records.index)
        for d in dims:
            if t.loc[i, d] != "Total":
                m &= records[d] == t.loc[i, d]
        return int(m.sum())

    caught = 0
    for n, i in enumerate(t.index[t["count"].isna()]):
        v = truth(i)
        if v < 5:
            continue
        b = tmp_path / str(n) / released["bundle"].name
        shutil.copytree(released["bundle"], b)
        edited = t.copy()
        edited.loc[i, "count"], edited.loc[i, "flag"] = str(v), ""
        buf = io.StringIO()
        edited.fillna("").to_csv(buf, index=False, lineterminator="\n")
        (b / f"{STEM}.csv").write_text(buf.getvalue(), encoding="utf-8")
        rehash(b)
        code, findings = _check(b)
        failed = {f["check"] for f in findings if not f["ok"]}
        assert "table-threshold" not in failed and "table-additivity" not in failed
        if code == 1:
            assert "table-audit" in failed
            caught += 1
    assert caught > 0


def test_run_reuses_the_protections_proof(width_path: None, tmp_path: Path) -> None:
    """The assessment at run time asks the question the protection's last audit answered: no
    audit of its own (and `release check` then finds the same figures, as above)."""
    inp = tmp_path / "uof.parquet"
    write_records(synth_use_of_force(800, seed=3), inp)
    with mock.patch.object(output_mod, "attack", wraps=audit_mod.attack) as spy:
        r = CliRunner().invoke(main, ["run", str(POLICY), "--input", str(inp), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert spy.call_count == 0
    bundle = next((tmp_path / "out" / "use-of-force-by-gender").iterdir())
    rep = json.loads((bundle / "report.json").read_text())
    assert rep["outputs"][0]["figures"]["suppression"]["proved_intervals"] > 0
