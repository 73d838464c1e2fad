"""Records into Spark: a Parquet file or folder, or a table of the Spark catalog, with what the manifest says of it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.errors import InputError, UsageError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


@dataclass(frozen=True)
class SparkSource:
    """Where a Spark run reads its records and how the manifest names them."""

    label: str
    "Path or catalog name, for messages and the report."
    sha256: str | None
    "sha256 of the Parquet file's bytes (folder: of its part files' hashes, by name); None for a catalog table."
    size: int = 0
    "Bytes of the Parquet file(s) hashed."
    manifest: dict[str, Any] = field(default_factory=dict)
    "What manifest.json records about the source (kind, name, files)."


def parquet_sha256(path: Path) -> tuple[str, list[dict[str, str]]]:
    """sha256 of a Parquet file, or of a folder of part files (hash of 'name sha256' lines, sorted by name)."""
    from release.io.readers import file_sha256

    if path.is_file():
        return file_sha256(path), [{"name": path.name, "sha256": file_sha256(path)}]
    # Top-level part files only (what Spark's reader and the row numbering take, in name order).
    parts = sorted(p for p in path.glob("*.parquet") if p.is_file())
    if not parts:
        raise InputError(f"{path}: a folder without .parquet files")
    files = [{"name": str(p.relative_to(path)), "sha256": file_sha256(p)} for p in parts]
    h = hashlib.sha256("".join(f"{f['name']} {f['sha256']}\n" for f in files).encode())
    return h.hexdigest(), files


def read(spark: Any, input_path: str | Path | None, table: str | None) -> tuple[Any, SparkSource]:
    """The records as a Spark DataFrame: --input a Parquet file/folder, or --table a catalog table."""
    if (input_path is None) == (table is None):
        raise UsageError("--engine spark reads one source: --input FILE.parquet|FOLDER or --table DB.TABLE"
                         " (a table of the Spark catalog)")
    if table is not None:
        if not spark.catalog.tableExists(table):
            raise InputError(f"{table}: no such table in the Spark catalog")
        df = spark.table(table)
        return df, SparkSource(label=table, sha256=None, manifest={"kind": "spark-catalog", "table": table})
    p = Path(str(input_path))
    if str(input_path).startswith(("postgresql://", "postgres://")):
        raise UsageError("--engine spark reads Parquet or catalog tables; a postgresql:// source runs on the local"
                         " engine")
    if _URI.match(str(input_path)):
        # Cluster storage (hdfs://, s3a://, abfss://, dbfs:/...): the executors read it; the driver
        # cannot hash what it never reads, so the manifest names the location instead.
        df = spark.read.parquet(str(input_path))
        return df, SparkSource(label=str(input_path), sha256=None,
                               manifest={"kind": "parquet-uri", "location": str(input_path)})
    if not p.exists():
        raise InputError(f"{p}: no such input file")
    if p.is_file() and p.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"{p}: the Spark runner reads Parquet (write CSV records to Parquet first, or run"
                         " --engine local)")
    sha, files = parquet_sha256(p)
    size = p.stat().st_size if p.is_file() else sum((p / f["name"]).stat().st_size for f in files)
    df = spark.read.parquet(str(p.absolute()))
    return df, SparkSource(label=str(p), sha256=sha, size=size, manifest={"kind": "parquet", "files": files})
