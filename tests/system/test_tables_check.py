"""`release check` re-audits a `table` bundle from its files: a suppressed cell filled back in fails it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from release.cli import main
from release.synth import synth_use_of_force, write_records
from tests.conftest import POLICIES
from tests.system.report_demo import rehash

POLICY = POLICIES / "use-of-force-by-gender.yaml"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("tables")
    records = synth_use_of_force(1500)
    inp = base / "uof.parquet"
    write_records(records, inp)
    r = CliRunner().invoke(main, ["run", str(POLICY), "--input", str(inp), "--out", str(base / "out")])
    assert r.exit_code == 0, r.output
    bundle = next((base / "out" / "use-of-force-by-gender").iterdir())
    return {"bundle": bundle, "records": records, "base": base}


def _copy(bundle: Path, dest: Path) -> Path:
    import shutil

    target = dest / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    return target


def _truth(records: pd.DataFrame, row: pd.Series, dims: list[str]) -> int:
    m = pd.Series(True, index=records.index)
    for d in dims:
        if row[d] != "Total":
            m &= records[d] == row[d]
    return int(m.sum())


def _check(bundle: Path) -> tuple[int, list[dict[str, Any]]]:
    r = CliRunner().invoke(main, ["check", "--allow-unapproved", str(bundle), "--json"])
    payload = json.loads(r.output[r.output.index("{"):])
    return r.exit_code, [f for f in payload["findings"] if not f["ok"]]


def _fill(bundle: Path, stem: str, i: int, value: int) -> None:
    p = bundle / f"{stem}.csv"
    t = pd.read_csv(p, dtype=str, keep_default_na=False)
    t.loc[i, "count"] = str(value)
    t.loc[i, "flag"] = ""
    buf = io.StringIO()
    t.to_csv(buf, index=False, lineterminator="\n")
    p.write_text(buf.getvalue(), encoding="utf-8")
    rehash(bundle)


def test_bundle_checks_clean(released: dict[str, Any]) -> None:
    code, failed = _check(released["bundle"])
    assert code == 0 and not failed
    rep = json.loads((released["bundle"] / "report.json").read_text())
    fig = rep["outputs"][0]["figures"]["suppression"]
    assert fig["primary"] > 0 and fig["secondary"] > 0
    assert fig["smallest_interval"] >= 5


def test_primary_cell_filled_back_in_fails_check(released: dict[str, Any], tmp_path: Path) -> None:
    b = _copy(released["bundle"], tmp_path)
    dims = ["gender", "perceived_race"]
    stem = "use-of-force-by-gender_race"
    t = pd.read_csv(b / f"{stem}.csv", dtype=str, keep_default_na=False, na_values=[""])
    truth = [(i, _truth(released["records"], t.loc[i], dims)) for i in t.index[t["count"].isna()]]
    i, v = next((i, v) for i, v in truth if 0 < v < 5)
    _fill(b, stem, i, v)
    code, failed = _check(b)
    assert code == 1
    assert "table-threshold" in {f["check"] for f in failed}
    assert not [f for f in failed if f["check"] == "hash"], "the manifest was re-hashed"


def test_secondary_cell_filled_back_in_exposes_a_primary(released: dict[str, Any], tmp_path: Path) -> None:
    """Filling a complementary cell with its true value (not itself risky) lets the LP recompute a small one."""
    dims = ["gender", "perceived_race"]
    stem = "use-of-force-by-gender_race"
    t = pd.read_csv(released["bundle"] / f"{stem}.csv", dtype=str, keep_default_na=False, na_values=[""])
    large = [(i, _truth(released["records"], t.loc[i], dims)) for i in t.index[t["count"].isna()]]
    large = [(i, v) for i, v in large if v >= 5]
    assert large, "no complementary cell in this table"
    caught = 0
    for n, (i, v) in enumerate(large):
        b = _copy(released["bundle"], tmp_path / str(n))
        _fill(b, stem, i, v)
        code, failed = _check(b)
        checks = {f["check"] for f in failed}
        assert "table-threshold" not in checks  # the filled value is not small: only the audit can tell
        if code == 1:
            assert "table-audit" in checks
            caught += 1
    assert caught > 0


def test_edited_published_value_breaks_additivity(released: dict[str, Any], tmp_path: Path) -> None:
    b = _copy(released["bundle"], tmp_path)
    stem = "use-of-force-by-gender_race"
    t = pd.read_csv(b / f"{stem}.csv", dtype=str, keep_default_na=False, na_values=[""])
    i = int(t.index[t["count"].notna() & (t["gender"] != "Total") & (t["perceived_race"] != "Total")][0])
    # Far more than the suppressed cells on its lines could absorb while staying non-negative.
    _fill(b, stem, i, int(t.loc[i, "count"]) + 10**6)
    code, failed = _check(b)
    assert code == 1 and "table-additivity" in {f["check"] for f in failed}


def test_suppression_is_identical_for_shuffled_input(released: dict[str, Any], tmp_path: Path) -> None:
    """Suppression is deterministic: the same records in another order publish byte-identical tables."""
    shuffled = released["records"].sample(frac=1.0, random_state=5).reset_index(drop=True)
    inp = tmp_path / "shuffled.parquet"
    write_records(shuffled, inp)
    r = CliRunner().invoke(main, ["run", str(POLICY), "--input", str(inp), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    again = next((tmp_path / "out" / "use-of-force-by-gender").iterdir())
    for stem in ("use-of-force-by-gender_race", "use-of-force-by-gender_division"):
        assert (again / f"{stem}.csv").read_bytes() == (released["bundle"] / f"{stem}.csv").read_bytes()
