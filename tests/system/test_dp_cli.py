"""DP releases through the CLI: fresh noise per run, the ledger lists spends, the cap blocks, check catches breaches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from release.cli import main
from release.io.bundle import sha256_bytes
from release.synth import synth_use_of_force, write_records
from tests.budget import write_config
from tests.system.report_demo import resign

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "use-of-force-by-race.yaml"


@pytest.fixture(scope="module")
def uof(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("uof") / "uof.parquet"
    write_records(synth_use_of_force(600), p)
    return p


@pytest.fixture
def tight_policy(tmp_path: Path) -> Path:
    """The bundled policy with a period cap of two releases."""
    doc = yaml.safe_load(POLICY.read_text())
    doc["budget"]["epsilon_per_period"] = 3.0
    doc["gate"]["max_epsilon_per_period"] = 3.0
    p = tmp_path / "uof-tight.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


@pytest.fixture(autouse=True)
def _deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment (release.toml: approval off, the demo's sources and ceilings); runs and checks use it."""
    monkeypatch.setenv("RELEASE_CONFIG", str(write_config(tmp_path / "deploy")))


def _run(args: list[str]) -> tuple[int, str]:
    if args[0] == "check":
        args = [*args, "--allow-unapproved"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    return r.exit_code, r.output


def test_two_runs_differ_ledger_lists_both_then_cap_blocks(tmp_path: Path, uof: Path, tight_policy: Path) -> None:
    out, ledger = tmp_path / "out", tmp_path / "ledger.sqlite"
    bundles = []
    for _ in range(2):
        code, text = _run(["run", str(tight_policy), "--input", str(uof), "--out", str(out), "--ledger", str(ledger),
                           "--json", "-q"])
        assert code == 0, text
        bundles.append(Path(json.loads(text[text.index("{"):])["bundle"]))
    a, b = (pd.read_csv(x / "force-by-race-division.csv") for x in bundles)
    assert list(a.columns) == ["perceived_race", "division", "count"]
    assert len(a) == 8 * 16 and a["count"].dtype.kind == "i"  # every public key, integers
    assert not a["count"].equals(b["count"])  # fresh noise on every run
    code, shown = _run(["ledger", "show", "--ledger", str(ledger)])
    assert code == 0
    for x in bundles:
        assert x.name in shown
    assert "epsilon 3 of 3 spent, 0 left" in shown and "use-of-force-records (unit person)" in shown
    # A third release would pass the period cap: exit 1, the budget message, no bundle.
    code, text = _run(["run", str(tight_policy), "--input", str(uof), "--out", str(out), "--ledger", str(ledger)])
    assert code == 1
    assert "epsilon_per_period cap 3" in text and "3 already spent" in text and "asks 1.5" in text
    assert "the budget belongs to the source" in text
    assert sorted(p.name for p in (out / "use-of-force-by-race").iterdir()) == sorted(x.name for x in bundles)
    code, shown = _run(["ledger", "show", "--ledger", str(ledger), "--json"])
    assert len({s["release_id"] for s in json.loads(shown)["spends"]}) == 2


def test_report_and_manifest_carry_dp_figures(tmp_path: Path, uof: Path) -> None:
    code, text = _run(["run", str(POLICY), "--input", str(uof), "--out", str(tmp_path / "o"), "--ledger",
                       str(tmp_path / "l.sqlite"), "--json", "-q"])
    assert code == 0, text
    bundle = Path(json.loads(text[text.index("{"):])["bundle"])
    report = json.loads((bundle / "report.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    dp = report["outputs"][0]["figures"]["dp"]
    for k in ("mechanism", "epsilon", "scale", "accuracy_95", "key_source", "threshold", "cells", "post_processing"):
        assert k in dp
    assert dp["epsilon"] == pytest.approx(1.0) and dp["key_source"] == "public" and dp["cells"] == 128
    assert dp["scale"] == pytest.approx(2 * 3 / 1.0)  # bound 2 records, three noised parts (cells + 2 margins)
    assert manifest["opendp"] == {"version": "0.16.0", "features": ["contrib"]}
    assert manifest["budget"]["spent_in_period_after"]["epsilon"] == pytest.approx(1.5)
    assert report["budget"]["asked"]["epsilon"] == pytest.approx(1.5)
    # Margins published and consistent with the cells.
    cells = pd.read_csv(bundle / "force-by-race-division.csv")
    margin = pd.read_csv(bundle / "force-by-race-division_by_division.csv").set_index("division")["count"]
    assert (cells.groupby("division")["count"].sum() == margin).all()
    code, text = _run(["check", "--allow-unapproved", "--allow-unapproved", str(bundle)])
    assert code == 0, text

    # A bundle whose policy now claims more epsilon than the caps allow, re-hashed to match: check fails.
    pol = bundle / "policy.yaml"
    doc = yaml.safe_load(pol.read_text())
    doc["budget"]["epsilon"] = 4.0
    pol.write_text(yaml.safe_dump(doc, sort_keys=False))
    manifest["policy_sha256"] = sha256_bytes(pol.read_bytes())
    manifest["files"]["policy.yaml"] = sha256_bytes(pol.read_bytes())
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    resign(bundle)
    code, text = _run(["check", "--allow-unapproved", str(bundle)])
    assert code == 1
    assert "max-epsilon-per-release" in text and "passes the cap 1.5" in text
    # The ledger entry the bundle recorded is no longer what its policy spends.
    assert "FAIL [dp-ledger-entry]" in text and "differ from what the policy's outputs spend" in text


def test_plan_shows_scale_and_accuracy_before_reading() -> None:
    code, text = _run(["plan", str(POLICY)])
    assert code == 0
    assert "scale: 6.0" in text and "accuracy_95: 18.4" in text and "scale: 4.0" in text


def test_seed_refused_outside_test_mode(tmp_path: Path, uof: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RELEASE_TEST_MODE"}
    r = subprocess.run([sys.executable, "-m", "release", "run", str(POLICY), "--input", str(uof), "--out",
                        str(tmp_path / "o"), "--ledger", str(tmp_path / "l.sqlite"), "--seed", "3"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert "refused outside test mode" in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "l.sqlite").exists()  # no bundle, no spend


def test_bad_input_spends_no_budget(tmp_path: Path, uof: Path) -> None:
    """Malformed input is refused (exit 2) before the ledger is touched: no spend, no bundle."""
    bad = pd.read_parquet(uof).rename(columns={"division": "div"})
    p = tmp_path / "bad.parquet"
    write_records(bad, p)
    ledger = tmp_path / "l.sqlite"
    code, text = _run(["run", str(POLICY), "--input", str(p), "--out", str(tmp_path / "o"), "--ledger", str(ledger)])
    assert code == 2
    assert "division" in text
    assert not ledger.exists() and not (tmp_path / "o").exists()
