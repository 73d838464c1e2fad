"""`release run --engine spark` at the command line: usage errors (exit 2) name what is missing, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import main
from tests.conftest import POLICIES


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["run", *args])
    return res.exit_code, res.output


def test_engine_spark_without_java_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    (tmp_path / "r.parquet").write_bytes(b"")
    code, out = _run(str(POLICIES / "use-of-force-by-gender.yaml"), "--engine", "spark",
                     "--input", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "out"))
    assert code == 2, out
    assert "--engine spark:" in out and ("no Java runtime" in out or "pyspark is not installed" in out)
    assert "Traceback" not in out and not (tmp_path / "out").exists()


def test_spark_master_needs_the_spark_engine(tmp_path: Path) -> None:
    code, out = _run(str(POLICIES / "use-of-force-by-gender.yaml"), "--engine", "local", "--spark-master",
                     "local[2]", "--input", str(tmp_path / "r.csv"), "--out", str(tmp_path / "out"))
    assert code == 2 and "--spark-master applies to --engine spark" in out


def test_release_toml_selects_the_spark_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "release.toml"
    cfg.write_text('[approval]\nrequired = false\n[engine]\nname = "spark"\n', encoding="utf-8")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    code, out = _run(str(POLICIES / "use-of-force-by-gender.yaml"), "--config", str(cfg),
                     "--input", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "out"))
    # The configuration chose Spark: the run fails for Spark's reason, not the local reader's.
    assert code == 2 and "--engine spark:" in out
