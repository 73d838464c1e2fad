"""The documented pre-commit hook blocks a publication folder holding a failing bundle; the CI workflow is valid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

HOOK = ROOT / "docs" / "hooks" / "pre-commit"


def hook(cwd: Path, work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELEASE_BIN": str(Path(sys.executable).parent / "release"),
           "RELEASE_CONFIG": str(work / "release.toml"), "RELEASE_NETWORK": str(work / "network" / "nodes.csv")}
    return subprocess.run(["bash", str(HOOK)], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_hook_passes_good_bundles_and_blocks_a_failing_one(demo: dict[str, Any], tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "release").exists():
        pytest.skip("the release command is not installed beside this Python")
    bundles = demo["bundles"]
    name, bundle = next(iter(bundles.items()))
    target = tmp_path / "publish" / name / bundle.name
    shutil.copytree(bundle, target)
    ok = hook(tmp_path, demo["work"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 bundle(s) checked, 0 failed" in ok.stdout
    csv = next(target.glob("*.csv"))
    data = bytearray(csv.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")
    csv.write_bytes(bytes(data))
    bad = hook(tmp_path, demo["work"])
    assert bad.returncode == 1
    assert "commit refused" in bad.stderr and csv.name in bad.stdout and "1 failed" in bad.stdout


def test_hook_without_a_publication_folder_is_quiet(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(HOOK)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == ""


def test_documented_workflow_is_valid_and_runs_the_gate() -> None:
    text = (ROOT / "docs" / "ci.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block, "docs/ci.md has no workflow"
    wf = yaml.safe_load(block.group(1))
    steps = wf["jobs"]["gate"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "release check-all" in runs and "--junit" in runs and "--github" in runs
    assert any(s.get("if") == "always()" for s in steps), "the JUnit report must be published on failure too"
    assert os.access(HOOK, os.X_OK)


def test_hook_takes_files_from_the_environment(demo: dict[str, Any], tmp_path: Path) -> None:
    """Keyrings from a configuration without [files]; network, addresses and layers from RELEASE_* variables."""
    if not (Path(sys.executable).parent / "release").exists():
        pytest.skip("the release command is not installed beside this Python")
    bundle = demo["bundles"].get("crime-indicators")
    if bundle is None:
        pytest.skip("the demo produced no crime-indicators bundle")
    shutil.copytree(bundle, tmp_path / "publish" / "crime-indicators" / bundle.name)
    work = demo["work"]
    cfg = tmp_path / "release.toml"
    cfg.write_text(f'[approval]\nkeyring = "{work / "keys" / "approvers.json"}"\n'
                   f'[signing]\nkeyring = "{work / "keys" / "release-keyring.json"}"\n')
    net = work / "network"
    env = {**os.environ, "RELEASE_BIN": str(Path(sys.executable).parent / "release"), "RELEASE_CONFIG": str(cfg),
           "RELEASE_NETWORK": str(net / "nodes.csv"), "RELEASE_ADDRESSES": str(net / "addresses.csv")}
    run = lambda e: subprocess.run(["bash", str(HOOK)], cwd=tmp_path, capture_output=True, text=True, env=e,  # noqa: E731
                                   timeout=600)
    without_layer = run(env)
    assert without_layer.returncode == 1 and "neighbourhoods" in without_layer.stdout
    ok = run({**env, "RELEASE_LAYERS": f"neighbourhoods={net / 'neighbourhoods.geojson'}"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
