"""Setup that stays working: the benchmark peers live in .venv-bench; `make bench` never changes .venv."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run as bench_run
from tests.conftest import ROOT


def _recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}\s*:", line))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return [lines[start], *body]


def test_make_bench_does_not_install_into_dot_venv() -> None:
    recipe = " ".join(_recipe("bench"))
    assert "$(BIN)" not in recipe and "pip install" not in recipe and "setup" not in recipe.split(":")[1]
    assert "benchmarks.run" in recipe


def test_the_runner_installs_the_peers_into_venv_bench_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(bench_run, "BENCH_VENV", tmp_path / ".venv-bench")
    monkeypatch.setattr(bench_run, "STAMP", tmp_path / ".venv-bench" / ".installed")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append([str(c) for c in cmd])
                        or subprocess.CompletedProcess(cmd, 0))
    (tmp_path / ".venv-bench").mkdir()  # what `python -m venv` would have made
    bench_run.ensure_bench_env()
    installs = [c for c in calls if "pip" in c]
    assert installs and all(c[0] == str(tmp_path / ".venv-bench" / "bin" / "python") for c in installs)
    assert any(any("[dev,bench]" in a for a in c) for c in installs)
    others = [c for c in calls if c[1:3] != ["-m", "venv"]]
    assert others == installs  # besides creating the environment, only its own pip runs


def test_the_runner_reruns_itself_in_venv_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.delenv("RELEASE_BENCH_IN_PLACE", raising=False)
    monkeypatch.setattr(bench_run, "_in_bench_env", lambda: False)
    monkeypatch.setattr(bench_run, "ensure_bench_env", lambda: Path("/x/.venv-bench/bin/python"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: seen.setdefault("cmd", cmd)
                        and subprocess.CompletedProcess(cmd, 0))
    assert bench_run.main(["identifiers"]) == 0
    assert seen["cmd"][:3] == ["/x/.venv-bench/bin/python", "-m", "benchmarks.run"]
