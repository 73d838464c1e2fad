"""Spark runner plumbing on local[2]: [engine] settings, sources, row functions and accumulators across partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from release.errors import InputError, UsageError
from release.governance.config import load_config


def _config(tmp_path: Path, text: str) -> dict[str, Any]:
    p = tmp_path / "release.toml"
    p.write_text(text, encoding="utf-8")
    return {"config": str(p)}


def test_engine_table_read_from_release_toml(tmp_path: Path) -> None:
    opts = _config(tmp_path, '[engine]\nname = "spark"\nmaster = "spark://h:7077"\n'
                             '[engine.spark]\n"spark.executor.memory" = "4g"\n"spark.sql.adaptive.enabled" = true\n')
    eng = load_config(opts).engine
    assert (eng.name, eng.master) == ("spark", "spark://h:7077")
    assert eng.spark == {"spark.executor.memory": "4g", "spark.sql.adaptive.enabled": "true"}
    from release.spark.session import settings

    assert settings({**opts, "spark_master": "local[2]"}).master == "local[2]"


@pytest.mark.parametrize("text, message", [
    ('[engine]\nname = "flink"\n', "engine.name must be one of"),
    ('[engine]\nmaster = 3\n', "engine.master must be a Spark master URL"),
    ('[engine]\nmastr = "x"\n', "engine.mastr: unknown key (did you mean 'master'?)"),
    ('[engine]\nspark = 1\n', "[engine.spark] must be a table"),
])
def test_engine_table_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        load_config(_config(tmp_path, text))
    assert message in str(e.value)


def test_default_engine_is_local(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, "[approval]\nrequired = false\n")).engine.name == "local"


class _Sum:
    """A toy accumulator: rows and the sum of `x` per `g` (batch-invariant, mergeable)."""

    def create(self) -> dict[str, int]:
        return {}

    def add(self, state: dict[str, int], batch: pa.RecordBatch) -> dict[str, int]:
        t = pa.Table.from_batches([batch]).group_by("g").aggregate([("x", "sum")])
        out = dict(state)
        for g, s in zip(t.column("g").to_pylist(), t.column("x_sum").to_pylist(), strict=True):
            out[g] = out.get(g, 0) + s
        return out

    def merge(self, a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}

    def finish(self, state: dict[str, int]) -> dict[str, int]:
        return dict(sorted(state.items()))


def _double(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([batch.column("g"), pc.multiply(batch.column("x"), 2)], names=["g", "x"])


def test_row_function_and_accumulator_over_partitions(spark: Any, tmp_path: Path) -> None:
    from release.spark.stages import accumulate, arrow_schema, map_batches

    rows = {"g": [f"g{i % 7}" for i in range(1000)], "x": list(range(1000))}
    df = spark.createDataFrame(pa.table(rows)).repartition(5)
    assert df.rdd.getNumPartitions() == 5
    out = map_batches(df, _double, pa.schema([("g", pa.string()), ("x", pa.int64())]))
    assert arrow_schema(out).names == ["g", "x"]
    got, rows_only = accumulate(out, [_Sum(), _Sum()])
    want: dict[str, int] = {}
    for g, x in zip(rows["g"], rows["x"], strict=True):
        want[g] = want.get(g, 0) + 2 * x
    assert got == dict(sorted(want.items())) == rows_only


def test_parquet_folder_and_catalog_sources(spark: Any, tmp_path: Path) -> None:
    from release.spark.source import read

    t = pa.table({"a": [1, 2, 3]})
    pq.write_table(t, tmp_path / "one.parquet")
    df, src = read(spark, tmp_path / "one.parquet", None)
    assert df.count() == 3 and src.sha256 and src.manifest["kind"] == "parquet"
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(t, folder / "part-0.parquet")
    pq.write_table(t, folder / "part-1.parquet")
    pq.write_table(pa.table({"a": [7, 8, 9, 10]}), folder / "part-1.parquet")
    df, src2 = read(spark, folder, None)
    assert df.count() == 7 and [f["name"] for f in src2.manifest["files"]] == ["part-0.parquet", "part-1.parquet"]
    from release.spark.rows import with_row_numbers

    # Row numbers are positions in the files taken in name order: what the local runner would number.
    numbered = with_row_numbers(spark, df, src2.manifest["files"], folder).toArrow()
    got = dict(zip(numbered.column("_row").to_pylist(), numbered.column("a").to_pylist(), strict=True))
    assert got == {1: 1, 2: 2, 3: 3, 4: 7, 5: 8, 6: 9, 7: 10}
    spark.createDataFrame(t).createOrReplaceTempView("records_view")
    df, src3 = read(spark, None, "records_view")
    assert df.count() == 3 and src3.manifest == {"kind": "spark-catalog", "table": "records_view"}
    with pytest.raises(InputError, match="no such table in the Spark catalog"):
        read(spark, None, "nope.nothing")
    (tmp_path / "r.csv").write_text("a\n1\n")
    with pytest.raises(InputError, match="reads Parquet"):
        read(spark, tmp_path / "r.csv", None)
    with pytest.raises(UsageError, match="one source"):
        read(spark, tmp_path / "one.parquet", "records_view")


def test_missing_columns_refused_like_the_local_runner(spark: Any, tmp_path: Path) -> None:
    from release.engine import run_release
    from release.spark.runner import run_release_spark
    from tests.conftest import POLICIES

    pq.write_table(pa.table({"some_column": ["a", "b", "c"]}), tmp_path / "r.parquet")
    errors = []
    for fn in (run_release, run_release_spark):
        with pytest.raises(InputError) as e:
            fn(POLICIES / "use-of-force-by-gender.yaml", tmp_path / "r.parquet", tmp_path / "out")
        errors.append(e.value)
    local, on_spark = errors
    assert any("[missing-column]" in d for d in local.details)
    assert on_spark.details == local.details and on_spark.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_shipped_files_are_read_from_sparkfiles(spark: Any, tmp_path: Path) -> None:
    """ship() hands SparkContext.addFile the run's approved copy under its sha256; take() gives the copy under
    SparkFiles' root with the file's own name and bytes, and refuses one whose sha256 is not the recorded one."""
    import hashlib

    from pyspark import SparkFiles

    from release.governance.trusted import TrustedFiles
    from release.spark.files import Shipped, ShippedFiles, ship

    src = tmp_path / "nodes.csv"
    src.write_bytes(b"node_id,lat,lon\n1,43.6,-79.4\n")
    trusted = TrustedFiles()
    try:
        trusted.take("network", "network", src)
        trusted.take("input", "records", src, covered=False)
        shipped = ship(spark, trusted)
    finally:
        trusted.close()
    assert set(shipped.files) == {"network"}  # the records are Spark's to read, never shipped
    f = shipped.files["network"]
    assert f.staged == f.sha256 == hashlib.sha256(src.read_bytes()).hexdigest() and f.file == "nodes.csv"
    src.unlink()
    got = shipped.take("network", "network", src)
    assert got.name == "nodes.csv" and got.read_bytes() == b"node_id,lat,lon\n1,43.6,-79.4\n"
    assert Path(SparkFiles.getRootDirectory()).resolve() in got.resolve().parents
    bad = ShippedFiles({"network": Shipped("network", "network", "nodes.csv", f.staged, "f" * 64)})
    with pytest.raises(InputError, match="not f{64} as the driver read it"):
        bad.take("network", "network", src)
