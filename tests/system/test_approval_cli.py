"""Acceptance: `release run` refuses a policy changed after approval or signed by an untrusted key (CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import main
from tests.conftest import POLICIES
from tests.system.mini import mini_policy, mini_records, write_policy


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `release` command in-process (click's runner, the same code path), run from `cwd`."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        r = CliRunner(env={"RELEASE_CONFIG": None, **(env or {})}).invoke(main, list(args))  # type: ignore[dict-item]
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


def real_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a fresh process, to prove the refusal end to end."""
    e = {k: v for k, v in os.environ.items() if k != "RELEASE_CONFIG"}
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=e,
                          cwd=cwd, timeout=300)


def published(out: Path) -> list[Path]:
    if not out.exists():
        return []
    return [b for d in out.iterdir() if not d.name.startswith(".") for b in d.iterdir() if not b.name.startswith(".")]


@pytest.fixture
def office(tmp_path: Path) -> dict[str, Path]:
    """A working folder with release.toml requiring approval, a trusted key, a policy and records."""
    r = cli("keygen", "--out", "keys", "--keyring", "keyring.json", "--name", "Privacy Office", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "release.toml").write_text('[approval]\nrequired = true\nkeyring = "keyring.json"\n')
    pol = write_policy(tmp_path / "mini.yaml", mini_policy())
    inp = tmp_path / "in.csv"
    mini_records().to_csv(inp, index=False)
    return {"dir": tmp_path, "policy": pol, "input": inp, "out": tmp_path / "out"}


def run(o: dict[str, Path], *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli("run", str(o["policy"]), "--input", str(o["input"]), "--out", str(o["out"]), *extra,
               cwd=o["dir"], env=env)


def test_approved_policy_runs_and_the_manifest_names_the_approver(office: dict[str, Path]) -> None:
    r = cli("policy", "approve", "mini.yaml", "--key", "keys/approval-key.pem", "--by", "Dana Reyes",
            cwd=office["dir"])
    assert r.returncode == 0 and "by Dana Reyes" in r.stdout and "covers:" in r.stdout, r.stderr
    r = run(office, "--json")
    assert r.returncode == 0, r.stderr
    bundle = Path(json.loads(r.stdout)["bundle"])
    man = json.loads((bundle / "manifest.json").read_text())
    assert man["approval"]["required"] is True and man["approval"]["approver"] == "Dana Reyes"
    assert "Dana Reyes" in (bundle / "report.html").read_text()
    chk = cli("check", str(bundle), "--json", cwd=office["dir"])
    assert chk.returncode == 0, chk.stdout
    appr = [f for f in json.loads(chk.stdout)["findings"] if f["check"] == "approval"]
    assert appr and appr[0]["ok"] and "Dana Reyes" in appr[0]["message"]


def test_one_character_change_after_approval_is_refused(office: dict[str, Path]) -> None:
    assert cli("policy", "approve", "mini.yaml", "--key", "keys/approval-key.pem", "--by", "Dana Reyes",
               cwd=office["dir"]).returncode == 0
    text = office["policy"].read_text()
    office["policy"].write_text(text.replace("Mini test dataset", "Mini test dataseT", 1))
    r = real_cli("run", str(office["policy"]), "--input", str(office["input"]), "--out", str(office["out"]),
                 cwd=office["dir"])
    assert r.returncode == 1
    assert f"policy {office['policy']} is not approved" in r.stderr
    assert "the policy changed after Dana Reyes approved it" in r.stderr
    assert "Traceback" not in r.stderr and published(office["out"]) == []


def test_untrusted_key_is_refused(office: dict[str, Path]) -> None:
    assert cli("keygen", "--out", "rogue", cwd=office["dir"]).returncode == 0
    r = cli("policy", "approve", "mini.yaml", "--key", "rogue/approval-key.pem", "--by", "Someone Else",
            cwd=office["dir"])
    assert r.returncode == 0, r.stderr
    r = run(office)
    assert r.returncode == 1 and f"policy {office['policy']} is not approved" in r.stderr
    assert "which is not in the trusted keyring" in r.stderr and "Someone Else" in r.stderr
    assert published(office["out"]) == []


def test_unsigned_policy_refused_and_config_from_env_or_option(office: dict[str, Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ("run", str(office["policy"]), "--input", str(office["input"]), "--out", str(office["out"]))
    by_env = cli(*args, cwd=elsewhere, env={"RELEASE_CONFIG": str(office["dir"] / "release.toml")})
    by_opt = cli(*args, "--config", str(office["dir"] / "release.toml"), cwd=elsewhere)
    for r in (by_env, by_opt):
        assert r.returncode == 1 and "no approval signature found" in r.stderr, r.stderr
    # No configuration anywhere: approval is still required (only an explicit `required = false` turns it off).
    r = cli(*args, "--json", cwd=elsewhere)
    assert r.returncode == 1 and "approval is required by default" in r.stderr, r.stderr
    assert published(office["out"]) == []


def test_refused_dp_release_spends_no_budget(office: dict[str, Path]) -> None:
    pol = POLICIES / "use-of-force-by-race.yaml"
    if not pol.is_file():
        pytest.skip("the DP policy use-of-force-by-race.yaml is not in policies/ yet")
    inp = office["dir"] / "uof.parquet"
    assert cli("synth", "--out", str(inp), "--records", "400", "--kind", "use-of-force",
               cwd=office["dir"]).returncode == 0
    ledger = office["dir"] / "ledger.sqlite"
    r = cli("run", str(pol), "--input", str(inp), "--out", str(office["out"]), "--ledger", str(ledger),
            cwd=office["dir"])
    assert r.returncode == 1 and "no approval signature found" in r.stderr, r.stderr
    assert not ledger.exists(), "the ledger was touched by a refused run"
    assert published(office["out"]) == []
