"""Run every benchmark module (benchmarks/bench_*.py) or the ones named: python -m benchmarks.run [name ...].

The runner owns its environment: it creates `.venv-bench` (the engine plus the peers it is
measured against: anonypy, maskmypy, pycanon) and re-runs itself there, so installing the peers
and their pins never touches `.venv`, which `make test` and `make demo` use.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venv-bench"
STAMP = BENCH_VENV / ".installed"
CONSTRAINTS = Path(__file__).resolve().parent / "constraints.txt"


def _bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def ensure_bench_env() -> Path:
    """Create .venv-bench once (again when pyproject.toml changes) and return its interpreter."""
    py = _bench_python()
    newest = max((ROOT / "pyproject.toml").stat().st_mtime, CONSTRAINTS.stat().st_mtime)
    if STAMP.is_file() and STAMP.stat().st_mtime >= newest and py.exists():
        return py
    print(f"setting up {BENCH_VENV.name} (the engine and the benchmark peers)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(CONSTRAINTS), "-e", f"{ROOT}[dev,bench]"], check=True)
    # pycanon pins an old typing-extensions that pydantic cannot use; its checks need only numpy/pandas.
    subprocess.run([*pip, "--no-deps", "pycanon"], check=True)
    STAMP.touch()
    return py


def _in_bench_env() -> bool:
    return Path(sys.prefix).resolve() == BENCH_VENV.resolve()


def main(argv: list[str]) -> int:
    if "--setup-only" in argv:
        ensure_bench_env()
        return 0
    if not _in_bench_env() and os.environ.get("RELEASE_BENCH_IN_PLACE") != "1":
        py = ensure_bench_env()
        return subprocess.run([str(py), "-m", "benchmarks.run", *argv], cwd=ROOT).returncode
    here = Path(__file__).resolve().parent
    names = argv or sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
