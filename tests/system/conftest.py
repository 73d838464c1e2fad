"""Fixtures of the system tests: one demo run shared by the report, gate and leak tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.system.report_demo import demo_run


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundles of one small demo run (built once per test session)."""
    return demo_run(tmp_path_factory)


@pytest.fixture
def demo_config(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Verify as the demo deployment does: its release.toml (keyrings, network, layers) for the whole test."""
    cfg = demo["work"] / "release.toml"
    monkeypatch.setenv("RELEASE_CONFIG", str(cfg))
    return cfg


@pytest.fixture(scope="session")
def pg_server():  # type: ignore[no-untyped-def]
    """One throwaway PostgreSQL 15 server for the session's PostgreSQL tests (tests/system/pg.py)."""
    from tests.system import pg

    why = pg.unavailable()
    if why:
        pytest.skip(f"no PostgreSQL test server: {why}")
    server = pg.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    """One local[2] Spark session for every Spark test (tests/system/test_spark_*.py); skipped, saying why,
    without pyspark or Java."""
    from release.spark.session import SparkSettings, session, unavailable

    why = unavailable()
    if why:
        pytest.skip(f"no Spark here: {why}")
    # Tiny data: few shuffle partitions keep each test's stages short.
    s = session(SparkSettings(master="local[2]", conf={"spark.sql.shuffle.partitions": "4",
                                                       "spark.default.parallelism": "2"}), "tests")
    yield s
    s.stop()
