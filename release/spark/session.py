"""The Spark session a Spark run uses: built from `[engine]` in release.toml (or --engine/--spark-master).

Nothing here imports pyspark at module level: the local runner never needs it, and a machine without
Java or pyspark gets a usage error naming what is missing (exit 2), never a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from release.errors import UsageError

DEFAULT_MASTER = "local[2]"
"Where a run goes when neither release.toml nor spark-submit names a master."

# Settings every session gets unless the deployment overrides them: small data on the driver is the
# design (only aggregates are collected), so the UI and Arrow fallbacks are off and Arrow is on.
BASE_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}


@dataclass(frozen=True)
class SparkSettings:
    """Where a Spark run executes and with which configuration (resolved from release.toml and the CLI)."""

    master: str | None = None
    "Spark master URL; None keeps what spark-submit (or a Databricks cluster) already set."
    conf: dict[str, str] = field(default_factory=dict)
    "Spark configuration given by the deployment (over BASE_CONF)."
    app_name: str = "release"
    "The application name Spark shows (the dataset name is appended per run)."


def unavailable() -> str | None:
    """Why Spark cannot run here (pyspark or Java missing), or None when it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'release-engine[spark]')"
    java = shutil.which("java") if not os.environ.get("JAVA_HOME") else os.path.join(os.environ["JAVA_HOME"], "bin", "java")
    if not java or not os.path.exists(java):
        return "no Java runtime (install Java 17, e.g. openjdk-17-jre-headless, or set JAVA_HOME)"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"java -version failed ({type(e).__name__})"
    if out.returncode != 0:
        return "java -version failed"
    return None


def settings(options: dict[str, Any]) -> SparkSettings:
    """The run's Spark settings: release.toml's [engine] table, --spark-master over its master."""
    from release.governance.config import load_config

    eng = load_config(options).engine
    master = options.get("spark_master") or eng.master
    return SparkSettings(master=master, conf=dict(eng.spark))


def session(s: SparkSettings, app: str = "") -> Any:
    """The active SparkSession (spark-submit, Databricks) or a new one built from the settings.

    An existing session is reused as it is: on a managed cluster the platform owns its configuration.
    """
    why = unavailable()
    if why:
        raise UsageError(f"--engine spark: {why}")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Python workers must import this engine and pyarrow: on a local master that is this interpreter.
    master = s.master or os.environ.get("MASTER")
    if master is None or master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName(f"{s.app_name} {app}".strip())
    if master is not None:
        b = b.master(master)
    elif "spark.master" not in _submitted_conf():
        b = b.master(DEFAULT_MASTER)
    for k, v in {**BASE_CONF, **s.conf}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _submitted_conf() -> dict[str, str]:
    """Spark settings spark-submit passed to this driver (PYSPARK_SUBMIT_ARGS or spark-defaults)."""
    args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return {"spark.master": "set"} if "--master" in args else {}
