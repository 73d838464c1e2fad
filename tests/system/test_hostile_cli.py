"""Hostile input through the real CLI: safe cells, safe terminal and CI output, valid JSON, plan-time file checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from release.cli import main
from tests.system.mini import mini_policy, mini_records, write_policy
from tests.system.report_demo import copy_bundle, rehash

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+cmd|' /C calc'!A0", "@SUM(A1:A9)", "-1+2"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def run_mini(tmp_path: Path, frame: pd.DataFrame, policy: dict[str, Any] | None = None) -> Any:
    pol = write_policy(tmp_path / "mini.yaml", policy or mini_policy())
    frame.to_csv(tmp_path / "in.csv", index=False)
    return CliRunner().invoke(main, ["run", str(pol), "--input", str(tmp_path / "in.csv"),
                                     "--out", str(tmp_path / "out"), "--seed", "1", "--json"])


def bundle_of(out: Path) -> Path:
    return next(p for p in (out / "mini").iterdir() if (p / "manifest.json").is_file())


# ---------------------------------------------------------------------------------- published cells

def test_formula_cells_are_neutralised_counted_and_checked(tmp_path: Path) -> None:
    d = mini_records(60)
    d.loc[:3, "division"] = FORMULAS
    res = run_mini(tmp_path, d)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["report"]
    assert report["outputs"][0]["figures"]["csv_cells_neutralised"] == 4 * int((d["division"] == FORMULAS[0]).sum())
    b = bundle_of(tmp_path / "out")
    csv_div = set(pd.read_csv(b / "records.csv", dtype=str)["division"])
    assert {"'" + f for f in FORMULAS} <= csv_div and not csv_div & set(FORMULAS)
    assert set(FORMULAS) <= set(pq.read_table(b / "records.parquet")["division"].to_pylist())
    chk = CliRunner().invoke(main, ["check", "--allow-unapproved", str(b), "--json"])
    assert chk.exit_code == 0, chk.output
    cells = [f for f in json.loads(chk.stdout)["findings"] if f["check"] == "published-cells"]
    assert cells and cells[0]["ok"]


def test_check_fails_a_bundle_with_a_live_formula_or_a_nul(tmp_path: Path) -> None:
    d = mini_records(60)
    d.loc[:1, "division"] = FORMULAS[:2]
    assert run_mini(tmp_path, d).exit_code == 0
    b = bundle_of(tmp_path / "out")
    for bad, what in ((lambda t: t.replace("'=HYPERLINK", "=HYPERLINK"), "live formula"),
                      (lambda t: t.replace("D11", "D\x0011", 1), "control character or NUL")):
        tampered = copy_bundle(b, tmp_path / f"t-{what[:4]}")
        p = tampered / "records.csv"
        p.write_text(bad(p.read_text()))
        rehash(tampered)
        res = CliRunner().invoke(main, ["check", "--allow-unapproved", str(tampered), "--json"])
        assert res.exit_code == 1
        cells = [f for f in json.loads(res.stdout)["findings"] if f["check"] == "published-cells"]
        assert not cells[0]["ok"] and what in cells[0]["message"]


# ------------------------------------------------------------------------------- identifier scan

def test_relabelled_direct_identifier_is_caught_by_the_scan(tmp_path: Path) -> None:
    pol = mini_policy()
    pol["input"]["columns"]["victim_name"]["role"] = "other"  # careless or hostile relabelling
    pol["steps"] = [s for s in pol["steps"] if s["type"] != "drop"]
    pol["outputs"][0]["columns"] = ["occurred", "category", "victim_name"]
    d = mini_records(60)
    d["victim_name"] = [f"{f} {s}" for f, s in zip(["Jane", "Omar", "Li", "Maria"] * 15,
                                                    ["Smith", "Haddad", "Wei", "Garcia"] * 15, strict=True)]
    res = run_mini(tmp_path, d, pol)
    assert res.exit_code == 1
    payload = json.loads(res.stdout)
    scan = [f for f in payload["report"]["findings"] if f["check"] == "identifier-scan"]
    assert scan and not scan[0]["ok"] and "victim_name: person-name" in scan[0]["message"]
    assert "Jane" not in res.output and not (tmp_path / "out" / "mini").exists()


def test_a_waiver_in_the_policy_lets_place_names_pass(tmp_path: Path) -> None:
    d = mini_records(60)
    d["division"] = ["Taylor-Massey", "Lawrence Park North", "Yorkdale-Glen Park"] * 20
    blocked = run_mini(tmp_path, d)
    assert blocked.exit_code == 1 and "division: person-name" in blocked.stdout
    res = run_mini(tmp_path, d, mini_policy(gate={"identifier_scan_waivers": {"division": ["person-name"]}}))
    assert res.exit_code == 0, res.output


def test_demo_bundles_pass_the_identifier_scan(demo: dict[str, Any]) -> None:
    for name, b in demo["bundles"].items():
        report = json.loads((b / "report.json").read_text())
        scan = [f for f in report["findings"] if f["check"] == "identifier-scan"]
        assert scan and all(f["ok"] for f in scan), name


# ------------------------------------------------------------------------ terminal and CI output

def test_hostile_messages_cannot_start_workflow_commands_or_escape_sequences(tmp_path: Path) -> None:
    d = mini_records(60)
    assert run_mini(tmp_path, d).exit_code == 0
    b = bundle_of(tmp_path / "out")
    tampered = copy_bundle(b, tmp_path / "t")
    evil = "x\n::warning::pwned\x1b]0;title\x07.csv"
    (tampered / evil).write_text("hi")  # an unlisted file with a hostile name
    res = CliRunner().invoke(main, ["check", str(tampered), "--github"])
    assert res.exit_code == 1
    for line in res.stdout.splitlines():
        assert "\x1b" not in line and "\x07" not in line
        assert not line.startswith("::") or line.startswith("::error file=")
    assert any(line.startswith("FAIL") and "::warning::pwned" in line for line in res.stdout.splitlines())
    res = CliRunner().invoke(main, ["check-all", str(tmp_path / "t")])
    assert all(not line.startswith("::") for line in res.stdout.splitlines())


# -------------------------------------------------------------------------------------------- JSON

def _parses(proc: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"stdout is not JSON: {proc.stdout[:300]!r}")


def test_every_command_prints_valid_json_for_every_demo_bundle(demo: dict[str, Any]) -> None:
    """check, check-all and plan --json parse for every demo bundle and bundled policy.

    check-all and one plan run as real processes (native libraries' output, such as a solver's
    banner, would reach their stdout); the per-bundle checks run in-process to keep the test fast.
    """
    from release.demo import DEFAULT_POLICIES

    net = demo["work"] / "network"
    geo = ["--network", str(net / "nodes.csv"), "--addresses", str(net / "addresses.csv"),
           "--layer", f"neighbourhoods={net / 'neighbourhoods.geojson'}"]
    every = _parses(cli("check-all", str(demo["out"]), "--json"))
    assert len(every["bundles"]) == len(demo["bundles"])
    for name, b in demo["bundles"].items():
        res = CliRunner().invoke(main, ["check", str(b), "--json", *geo])
        assert json.loads(res.stdout)["bundle"].endswith(b.name), name
    plans = [*geo, "--layer", f"divisions={net / 'divisions.geojson'}"]
    for pol in sorted(DEFAULT_POLICIES.glob("*.yaml")):
        res = CliRunner().invoke(main, ["plan", str(pol), "--json", *plans])
        assert "outputs" in json.loads(res.stdout), pol.name
    assert "outputs" in _parses(cli("plan", str(DEFAULT_POLICIES / "crime-indicators.yaml"), "--json", *plans))


def test_run_json_is_valid_for_every_output_kind(tmp_path: Path) -> None:
    """One run per output kind, including `table` (HiGHS) and `dp-table` (OpenDP)."""
    from release.demo import DEFAULT_POLICIES

    pol = DEFAULT_POLICIES / "use-of-force-by-race.yaml"  # dp-table and table outputs
    from release.synth import synth_use_of_force, write_records

    write_records(synth_use_of_force(400), tmp_path / "uof.parquet")
    proc = cli("run", str(pol), "--input", str(tmp_path / "uof.parquet"), "--out", str(tmp_path / "out"),
               "--ledger", str(tmp_path / "ledger.sqlite"), "--json", env={"RELEASE_TEST_MODE": "1"})
    assert "report" in _parses(proc) or "error" in _parses(proc), proc.stderr[-500:]


def test_errors_with_json_are_json(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("dataset: [")
    proc = cli("plan", str(p), "--json")
    assert proc.returncode == 2 and _parses(proc)["error"] == "policy error"


# ------------------------------------------------------------------------------- plan-time files

def _geo_policy(tmp_path: Path, **network: Any) -> Path:
    pol = mini_policy()
    pol["steps"].append({"type": "geomask-snap", "min_addresses": 8, "network": network})
    return write_policy(tmp_path / "geo.yaml", pol)


def test_plan_fails_on_a_missing_network_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plan", str(_geo_policy(tmp_path, nodes="nowhere.csv"))])
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_plan_fails_when_min_addresses_has_no_address_counts(tmp_path: Path) -> None:
    pd.DataFrame({"node_id": ["a", "b"], "lat": [43.7, 43.71], "lon": [-79.4, -79.41]}).to_csv(tmp_path / "n.csv",
                                                                                             index=False)
    res = CliRunner().invoke(main, ["plan", str(_geo_policy(tmp_path, nodes="n.csv"))])
    assert res.exit_code == 2 and "min_addresses is set but the network has no address counts" in res.stderr
    pd.DataFrame({"node_id": ["a", "b"], "lat": [43.7, 43.71], "lon": [-79.4, -79.41],
                  "address_count": [9, 12]}).to_csv(tmp_path / "n.csv", index=False)
    res = CliRunner().invoke(main, ["plan", str(_geo_policy(tmp_path, nodes="n.csv"))])
    assert res.exit_code == 0, res.output


def test_plan_fails_on_a_missing_layer_and_a_missing_hierarchy(tmp_path: Path) -> None:
    pol = mini_policy()
    pol["steps"].append({"type": "geomask-area", "column": "division",
                         "areas": {"layer": "hoods", "property": "CODE", "path": "no.geojson"}})
    res = CliRunner().invoke(main, ["plan", str(write_policy(tmp_path / "a.yaml", pol))])
    assert res.exit_code == 2 and "no.geojson" in res.stderr
    pol = mini_policy()
    pol["steps"].append({"type": "k-anonymity", "k": 2, "quasi_identifiers": {"category": {"csv": "missing.csv"}}})
    res = CliRunner().invoke(main, ["plan", str(write_policy(tmp_path / "k.yaml", pol))])
    assert res.exit_code == 2 and "hierarchy file" in res.stderr
