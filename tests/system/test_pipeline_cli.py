"""The pipeline end to end through the real CLI: plan, run, check, errors, atomic bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from release.cli import main
from tests.conftest import POLICIES
from tests.system.mini import mini_policy, mini_records, write_policy


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=e,
                          cwd=cwd, timeout=300)


@pytest.fixture
def mini(tmp_path: Path) -> tuple[Path, Path, Path]:
    pol = write_policy(tmp_path / "mini.yaml", mini_policy())
    inp = tmp_path / "in.csv"
    mini_records().to_csv(inp, index=False)
    return pol, inp, tmp_path / "out"


def bundles(out: Path) -> list[Path]:
    """Visible bundle folders (staging and internal folders start with a dot)."""
    if not out.exists():
        return []
    return [b for d in out.iterdir() if not d.name.startswith(".") for b in d.iterdir() if not b.name.startswith(".")]


def test_run_and_check_through_cli(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    bundle = Path(res["bundle"])
    assert bundle.parent == out / "mini"
    rep = json.loads((bundle / "report.json").read_text())
    assert rep["verdict"] == "pass" and rep["dataset"] == "mini" and rep["release_id"] == bundle.name
    assert rep["outputs"][0]["kind"] == "records" and "records.csv" in rep["outputs"][0]["files"]
    man = json.loads((bundle / "manifest.json").read_text())
    assert set(man["files"]) >= {"records.csv", "records.parquet", "report.json", "datapackage.json"}
    assert len(man["policy_sha256"]) == 64 and len(man["input_sha256"]) == 64 and "opendp" in man["versions"]
    published = pd.read_csv(bundle / "records.csv")
    assert list(published.columns) == ["occurred", "category", "age", "division"]
    assert "victim_name" not in (bundle / "records.csv").read_text()
    dp = json.loads((bundle / "datapackage.json").read_text())
    assert dp["resources"][0]["schema"]["fields"][0]["name"] == "occurred"
    c = cli("check", "--allow-unapproved", str(bundle))
    assert c.returncode == 0, c.stdout + c.stderr
    assert "pass" in c.stdout


def test_check_fails_naming_the_file_after_one_byte_changes(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    res = CliRunner().invoke(main, ["run", str(pol), "--input", str(inp), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    bundle = Path(json.loads(res.stdout)["bundle"])
    data = bytearray((bundle / "records.csv").read_bytes())
    data[-3] = ord("X") if data[-3] != ord("X") else ord("Y")
    (bundle / "records.csv").write_bytes(bytes(data))
    r = cli("check", "--allow-unapproved", str(bundle))
    assert r.returncode == 1
    assert "records.csv" in r.stdout and "FAIL" in r.stdout


@pytest.mark.parametrize("policy", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.name)
def test_plan_reads_no_records(policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import release.io.readers as readers

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("plan must not read records")

    monkeypatch.setattr(readers, "read_table", boom)
    res = CliRunner().invoke(main, ["plan", str(policy)])
    if res.exit_code == 2:
        # A policy whose network or area layer comes from run options: without them the plan
        # fails as the run would (and still reads no record).
        assert "a run would fail the same way" in res.stderr and ("--network" in res.stderr or "layer" in res.stderr)
        return
    assert res.exit_code == 0, res.output
    assert "outputs:" in res.output and "publishes" in res.output


def _policy_error(tmp_path: Path, text: str) -> str:
    p = tmp_path / "x.yaml"
    p.write_text(text)
    r = cli("plan", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def test_policy_errors_name_file_line_and_path(tmp_path: Path) -> None:
    import yaml

    base = mini_policy()
    base["steps"][0]["colour"] = "red"  # unknown key
    err = _policy_error(tmp_path, yaml.safe_dump(base, sort_keys=False))
    lines = yaml.safe_dump(base, sort_keys=False).splitlines()
    want_line = next(i for i, s in enumerate(lines, 1) if "colour" in s)
    assert f"x.yaml:{want_line} steps[0].colour: unknown key" in err

    base = mini_policy(gate={"min_k": 1})
    text = yaml.safe_dump(base, sort_keys=False)
    want_line = next(i for i, s in enumerate(text.splitlines(), 1) if "min_k" in s)
    assert f"x.yaml:{want_line} gate.min_k: must be at least 2" in _policy_error(tmp_path, text)

    base = mini_policy()
    base["outputs"][0]["columns"] = ["occurred", "offence_code"]
    text = yaml.safe_dump(base, sort_keys=False)
    want_line = next(i for i, s in enumerate(text.splitlines(), 1) if "offence_code" in s)
    err = _policy_error(tmp_path, text)
    assert f"x.yaml:{want_line} outputs[0].columns[1]: column 'offence_code'" in err


def test_unknown_step_type_is_named(tmp_path: Path) -> None:
    import yaml

    base = mini_policy()
    base["steps"].append({"type": "shuffle-everything"})
    err = _policy_error(tmp_path, yaml.safe_dump(base, sort_keys=False))
    assert "steps[4]" in err and "shuffle-everything" in err


def test_publishing_a_direct_identifier_is_a_policy_error(tmp_path: Path) -> None:
    import yaml

    base = mini_policy(steps=[])
    base["outputs"][0]["columns"] = ["occurred", "victim_name"]
    err = _policy_error(tmp_path, yaml.safe_dump(base, sort_keys=False))
    assert "direct identifier" in err and "outputs[0]" in err


def test_bad_input_lists_every_rule_with_row_ids_and_publishes_nothing(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    df = mini_records(50)
    df.loc[3, "latitude"] = 91.0
    df.loc[7, ["latitude", "longitude"]] = [df.loc[7, "longitude"], df.loc[7, "latitude"]]  # swapped
    df.loc[12, "record_id"] = df.loc[11, "record_id"]
    df = df.rename(columns={"division": "div"})
    df.to_csv(inp, index=False)
    secret = df.loc[3, "victim_name"]
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr
    assert "Traceback" not in err
    assert "[latitude-range] column 'latitude'" in err and "rows 4" in err
    assert "[swapped-lat-lon]" in err and "rows 8" in err
    assert "[duplicate-id] column 'record_id'" in err and "rows 12, 13" in err
    assert "[missing-column] column 'division'" in err
    # The undeclared header name is not echoed (it could be a data row); its position and the
    # declared column it resembles are.
    assert "[unexpected-column] column '#5': input column 5 is not declared in the policy; did you mean 'division'?" in err
    assert "'div'" not in err
    # The paths printed are pytest's temp folders, whose numbers may hold "91" (pytest-291).
    shown = err.replace(str(inp.parent), "").replace(str(out.parent), "").replace("rows", "")
    assert secret not in err and "91" not in shown
    assert not out.exists()


def test_invalid_rows_can_be_excluded_and_counted(tmp_path: Path) -> None:
    pol = mini_policy()
    pol["input"]["on_invalid"] = "exclude"
    p = write_policy(tmp_path / "p.yaml", pol)
    df = mini_records(40)
    df.loc[5, "age"] = 300
    df.loc[6, "category"] = "Arson"
    df.to_csv(tmp_path / "in.csv", index=False)
    res = CliRunner().invoke(main, ["run", str(p), "--input", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o"),
                                    "--json", "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)["report"]
    assert rep["validation"]["rows_excluded"] == 2
    assert {v["rule"] for v in rep["validation"]["violations"]} == {"range", "category"}
    assert rep["outputs"][0]["figures"]["rows"] == 38


def test_future_dates_are_refused(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    df = mini_records(20)
    df.loc[2, "occurred"] = "2099-01-01T00:00:00"
    df.to_csv(inp, index=False)
    res = CliRunner().invoke(main, ["run", str(pol), "--input", str(inp), "--out", str(out)])
    assert res.exit_code == 2
    assert "[future-date] column 'occurred'" in res.output and "rows 3" in res.output


def test_seed_is_refused_outside_test_mode(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out), "--seed", "1", env={"RELEASE_TEST_MODE": "0"})
    assert r.returncode == 2 and "test mode" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("point", ["staging-created", "file-0", "file-3", "before-manifest", "before-rename"])
def test_sigkill_during_writing_leaves_no_partial_bundle(mini: tuple[Path, Path, Path], point: str) -> None:
    pol, inp, out = mini
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out), env={"RELEASE_TEST_CRASH_AT": point})
    assert r.returncode == -9, (r.returncode, r.stderr)
    assert bundles(out) == []
    # The next run publishes normally despite the debris of the killed one.
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out))
    assert r.returncode == 0, r.stderr
    [b] = bundles(out)
    assert cli("check", "--allow-unapproved", str(b)).returncode == 0


def test_sigkill_after_rename_leaves_a_complete_bundle(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    r = cli("run", str(pol), "--input", str(inp), "--out", str(out), env={"RELEASE_TEST_CRASH_AT": "after-rename"})
    assert r.returncode == -9
    [b] = bundles(out)
    assert cli("check", "--allow-unapproved", str(b)).returncode == 0


def test_output_is_independent_of_input_order(tmp_path: Path) -> None:
    from release.engine import run_release

    pol = write_policy(tmp_path / "p.yaml", mini_policy(steps=[{"type": "drop", "roles": ["direct-identifier"]},
                                                               {"type": "generalize", "column": "occurred", "time": "month"}]))
    df = mini_records(300)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.sample(frac=1, random_state=3).to_csv(tmp_path / "b.csv", index=False)
    a = run_release(pol, tmp_path / "a.csv", tmp_path / "oa").bundle
    b = run_release(pol, tmp_path / "b.csv", tmp_path / "ob").bundle
    assert a is not None and b is not None
    assert (a / "records.csv").read_bytes() == (b / "records.csv").read_bytes()
    assert (a / "records.parquet").read_bytes() == (b / "records.parquet").read_bytes()


def test_policy_schema_is_json_schema() -> None:
    res = CliRunner().invoke(main, ["policy", "schema"])
    assert res.exit_code == 0
    schema = json.loads(res.output)
    assert schema["additionalProperties"] is False and "steps" in schema["properties"]


def test_demo_runs_checks_and_summarizes_skipping_policies_without_input(tmp_path: Path) -> None:
    import shutil

    pols = tmp_path / "policies"
    pols.mkdir()
    shutil.copy(POLICIES / "crime-indicators.yaml", pols)
    write_policy(pols / "mini.yaml", mini_policy())
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--work", str(tmp_path / "work"), "--records", "500",
                                    "--policies", str(pols), "-q"])
    assert res.exit_code == 0, res.output
    assert "crime-indicators.yaml" in res.output and "skipped" in res.output
    [bundle] = bundles(out)
    assert bundle.parent.name == "crime-indicators" and (bundle / "report.html").is_file()
    assert not any(p.suffix == ".parquet" and "crimes" in p.name for p in out.rglob("*"))
