"""The arrests policy end to end: run, `release check` passes, and fails (exit 1) once a published
class is edited below k with the manifest re-hashed; the value mapping stays internal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from release.cli import main
from release.engine import run_release
from release.synth import synth_use_of_force, write_records
from tests.conftest import POLICIES, internal_dir
from tests.system.report_demo import resign

POLICY = POLICIES / "arrests-strip-search.yaml"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("anon")
    write_records(synth_use_of_force(3000), d / "uof.parquet")
    res = run_release(POLICY, d / "uof.parquet", d / "out", seed=1)
    assert res.verdict == "pass" and res.bundle is not None
    return res.bundle


def rehash(b: Path) -> None:
    man = json.loads((b / "manifest.json").read_text())
    for rel in man["files"]:
        man["files"][rel] = hashlib.sha256((b / rel).read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(man, indent=2))
    resign(b)


def test_report_has_anonymity_figures_and_check_passes(bundle: Path) -> None:
    rep = json.loads((bundle / "report.json").read_text())
    fig = rep["outputs"][0]["figures"]["anonymity"]
    assert fig["k"] >= 5 and fig["l"]["arrest"]["distinct"] >= 2
    assert fig["risk"]["prosecutor"]["highest"] <= 0.2
    assert sum(int(s) * c for s, c in fig["class_size_distribution"].items()) == fig["records"]
    step = next(s for s in rep["steps"] if s["type"] == "k-anonymity")
    assert step["suppressed_share"] <= 0.05 and set(step["levels"]) == set(fig["quasi_identifiers"])
    r = CliRunner().invoke(main, ["check", "--allow-unapproved", str(bundle)])
    assert r.exit_code == 0, r.output
    # The value -> generalized value mapping is internal: never in the bundle.
    internal = list(internal_dir(bundle).rglob("*.json"))
    assert internal
    mapping = json.loads(internal[0].read_text())["anonymize"]
    (qis,) = mapping.values()
    assert set(qis) == set(fig["quasi_identifiers"]) and "D11" in qis["division"]
    for p in bundle.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".csv", ".html"):
            assert '"anonymize"' not in p.read_text(encoding="utf-8")


def test_check_fails_when_a_class_is_edited_below_k(bundle: Path, tmp_path: Path) -> None:
    import shutil

    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    csv = b / "arrests.csv"
    t = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    qis = ["occurrence_date", "age_group", "division", "perceived_race", "gender"]
    combos = set(map(tuple, t[qis].astype(str).to_numpy()))
    row = t.loc[0, qis].astype(str).copy()
    row["occurrence_date"] = "1999-Q1" if row["occurrence_date"] != "*" else "1999"
    assert tuple(row) not in combos
    t.loc[0, "occurrence_date"] = row["occurrence_date"]
    t.to_csv(csv, index=False, lineterminator="\n")
    rehash(b)
    r = CliRunner().invoke(main, ["check", "--allow-unapproved", str(b), "--json"])
    assert r.exit_code == 1, r.output
    payload = json.loads(r.output[r.output.index("{"):])
    failed = [f for f in payload["findings"] if not f["ok"]]
    assert not [f for f in failed if f["check"] == "hash"]
    k = [f for f in failed if f["check"] == "k-anonymity"]
    assert k and k[0]["figure"] == 1 and k[0]["file"] == "arrests.csv"


def test_fairness_bands_public_exact_figures_internal(bundle: Path) -> None:
    rep = json.loads((bundle / "report.json").read_text())
    fair = next(s for s in rep["steps"] if s["type"] == "k-anonymity")["fairness"]
    bands = {"< 1%", "1–5%", "5–20%", "> 20%"}
    cols = {g["column"] for g in fair["groups"]}
    assert {"perceived_race", "age_group", "gender"} <= cols
    assert all(g["suppressed"] in bands and g["full detail"] in bands for g in fair["groups"])
    internal = json.loads(next(internal_dir(bundle).rglob("*.json")).read_text())
    (exact,) = internal["fairness"].values()
    race = exact["columns"]["perceived_race"]
    assert sum(v["records"] for v in race.values()) == rep["outputs"][0]["figures"]["anonymity"]["records"] + next(
        s for s in rep["steps"] if s["type"] == "k-anonymity")["suppressed_records"]
    html = (bundle / "report.html").read_text()
    assert "share of each group suppressed and published at full detail" in html
    # The exact per-group figures (their keys) appear in no published file.
    for p in bundle.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".csv", ".html"):
            assert "full_detail_share" not in p.read_text(encoding="utf-8"), p.name
