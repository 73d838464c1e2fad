"""Acceptance: `release check` catches semantic tampering from the bundle alone, manifest re-hashed to match."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from release.check import check_bundle
from release.cli import main
from tests.conftest import POLICIES
from tests.system.report_demo import copy_bundle, internal_of, rehash, resign

pytestmark = pytest.mark.usefixtures("demo_config")


def bundle_of(demo: dict[str, Any], policy: str, dataset: str) -> Path:
    if not (POLICIES / policy).is_file():
        pytest.skip(f"policies/{policy} does not exist yet (its engineer's issue has not landed)")
    b = demo["bundles"].get(dataset)
    if b is None:
        pytest.skip(f"the demo produced no {dataset} bundle: {demo['rows']}")
    return b


def read_csv(p: Path) -> pd.DataFrame:
    return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])


def write_csv(t: pd.DataFrame, p: Path) -> None:
    buf = io.StringIO()
    t.to_csv(buf, index=False, lineterminator="\n")
    p.write_text(buf.getvalue(), encoding="utf-8")


def check_with_junit(bundle: Path, tmp_path: Path) -> tuple[dict[str, Any], ET.Element, str]:
    junit = tmp_path / "junit.xml"
    r = CliRunner().invoke(main, ["check", str(bundle), "--junit", str(junit), "--github", "--json"])
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    annotations = "\n".join(line for line in lines if line.startswith("::error "))
    payload = json.loads("\n".join(line for line in lines if not line.startswith("::error ")))
    return payload, ET.parse(junit).getroot(), annotations


def assert_reported(payload: dict[str, Any], root: ET.Element, annotations: str) -> list[dict[str, Any]]:
    """Every failed finding is a JUnit <failure> and a GitHub annotation; the hashes themselves pass."""
    failed = [f for f in payload["findings"] if not f["ok"]]
    assert failed
    assert not [f for f in failed if f["check"] == "hash"], "the manifest was re-hashed: hashes must pass"
    messages = [e.get("message") for e in root.iter("failure")]
    assert sorted(messages) == sorted(f["message"] for f in failed)
    cases = list(root.iter("testcase"))
    assert len(cases) == len(payload["findings"]) and int(root.get("failures", -1)) == len(failed)
    for f in failed:
        assert f["check"] in annotations
    return failed


def test_untouched_demo_bundles_pass_with_junit(demo: dict[str, Any], tmp_path: Path) -> None:
    junit = tmp_path / "all.xml"
    r = CliRunner().invoke(main, ["check-all", str(demo["out"]), "--junit", str(junit)])
    assert r.exit_code == 0, r.output
    root = ET.parse(junit).getroot()
    assert len(root.findall("testsuite")) == len(demo["bundles"]) and root.get("failures") == "0"


def test_records_class_below_k(demo: dict[str, Any], tmp_path: Path) -> None:
    b = copy_bundle(bundle_of(demo, "arrests-strip-search.yaml", "arrests-strip-search"), tmp_path)
    rep = json.loads((b / "report.json").read_text())
    out = next(o for o in rep["outputs"] if (o.get("figures") or {}).get("anonymity"))
    qis = out["figures"]["anonymity"]["quasi_identifiers"]
    csv = b / next(f for f in out["files"] if f.endswith(".csv"))
    t = read_csv(csv)
    combos = set(map(tuple, t[qis].astype(str).to_numpy()))
    import yaml

    declared = yaml.safe_load((b / "policy.yaml").read_text())["input"]["columns"]
    done = False
    for col in qis:
        # Published values of the column, then its ungeneralized categories (e.g. 'D11' where '*' is published).
        values = [*map(str, t[col].dropna().unique()), *map(str, declared.get(col, {}).get("categories") or [])]
        for v in values:
            cand = t.loc[0, qis].astype(str).copy()
            cand[col] = v
            if tuple(cand) not in combos:
                t.loc[0, col] = v  # one record moved into a class of its own
                done = True
                break
        if done:
            break
    assert done
    write_csv(t, csv)
    rehash(b)
    payload, root, ann = check_with_junit(b, tmp_path)
    failed = assert_reported(payload, root, ann)
    k = [f for f in failed if f["check"] == "k-anonymity"]
    assert k and k[0]["figure"] == 1 and k[0]["output"] == out["name"]


def test_dp_budget_past_the_cap(demo: dict[str, Any], tmp_path: Path) -> None:
    b = copy_bundle(bundle_of(demo, "use-of-force-by-race.yaml", "use-of-force-by-race"), tmp_path)
    man = json.loads((b / "manifest.json").read_text())
    cap = man["budget"]["caps"]["per_release"]["epsilon"]
    # The forged bundle claims its tables spent twice the cap, and its policy says so too.
    man["budget"]["asked"]["epsilon"] = cap * 2
    (b / "manifest.json").write_text(json.dumps(man, indent=2))
    resign(b)
    rehash(b)
    payload, root, ann = check_with_junit(b, tmp_path)
    failed = assert_reported(payload, root, ann)
    over = [f for f in failed if f["check"] == "max-epsilon-per-release"]
    assert over and over[0]["figure"] == cap * 2 and over[0]["threshold"] == cap


def test_suppressed_cell_filled_back_in(demo: dict[str, Any], tmp_path: Path) -> None:
    b = copy_bundle(bundle_of(demo, "use-of-force-by-gender.yaml", "use-of-force-by-gender"), tmp_path)
    rep = json.loads((b / "report.json").read_text())
    out = next(o for o in rep["outputs"] if o["kind"] == "table")
    csv = b / next(f for f in out["files"] if f.endswith(".csv"))
    t = read_csv(csv)
    blank = [(i, c) for c in t.columns for i in t.index[t[c].isna()]]
    assert blank, "the table has no suppressed cell to fill back in"
    truths = internal_of(bundle_of(demo, "use-of-force-by-gender.yaml", "use-of-force-by-gender"))
    del truths  # the true value is not needed: any number in a suppressed cell must be caught
    i, c = blank[0]
    t[c] = t[c].astype(object)
    t.loc[i, c] = "3"
    write_csv(t, csv)
    rehash(b)
    payload, root, ann = check_with_junit(b, tmp_path)
    assert_reported(payload, root, ann)


def test_check_result_never_reads_report_json(demo: dict[str, Any], tmp_path: Path) -> None:
    """A forged report.json (claiming k is huge) changes no recomputed figure (they come from the data files)
    and is itself caught: report.json must state what the published files show."""
    b = copy_bundle(bundle_of(demo, "arrests-strip-search.yaml", "arrests-strip-search"), tmp_path)
    before = [(f.check, f.ok, f.message) for f in check_bundle(b).findings]
    rep = json.loads((b / "report.json").read_text())
    for o in rep["outputs"]:
        if (o.get("figures") or {}).get("anonymity"):
            o["figures"]["anonymity"]["k"] = 10_000
    (b / "report.json").write_text(json.dumps(rep))
    rehash(b)
    after = check_bundle(b).findings
    ours = ("report-json", "report-html-regenerated")
    assert [x for x in before if x[0] not in ours] == [(f.check, f.ok, f.message) for f in after if f.check not in ours]
    caught = [f for f in after if f.check == "report-json" and not f.ok]
    assert any("['anonymity']" in f.message for f in caught)
