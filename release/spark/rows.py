"""Validation and the row-local steps on Spark: the engine's own row pipeline, partition-wise through mapInArrow.

What the local runner does batch by batch (release.engine._run_row_pipeline) happens here partition
by partition with the same objects: the record-id rule as an accumulator over every partition, then
`release.batches.row_pipeline` shipped to the executors. Each partition returns its rows and, in
the same pass, its merged BatchResult (validation counts and row numbers, the steps' evidence
parts) as one extra row in a binary column; the driver merges those. No value leaves an executor
except in the rows the pipeline publishes onwards.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from release.batches import ROW, BatchResult, DuplicateIds, raw_frame
from release.errors import InternalError
from release.spark.stages import accumulate, spark_schema

RESULT = "_batch_result"
"Binary column carrying one pickled BatchResult per partition (null on every data row)."


def with_row_numbers(spark: Any, df: Any, files: list[dict[str, str]] | None, root: Path | None) -> Any:
    """df with `_row`: the 1-based input row number validation reports (never a value).

    Parquet: the row's position in the file (`_metadata.row_index`), files taken in name order as
    the manifest lists them, so the numbers are those the local runner gives. A catalog table has no
    file order: Spark's row id (unique, increasing within a partition) stands in.
    """
    from pyspark.sql import functions as F

    if files is None or root is None:
        return df.withColumn(ROW, F.monotonically_increasing_id() + F.lit(1))
    import pyarrow.parquet as pq

    if root.is_file():
        return df.withColumn(ROW, F.col("_metadata.row_index") + F.lit(1))
    offsets, off = {}, 0
    for f in files:
        offsets[Path(f["name"]).name] = off
        off += pq.ParquetFile(root / f["name"]).metadata.num_rows
    table = spark.createDataFrame([(k, v) for k, v in offsets.items()], "_file string, _offset long")
    # The hidden _metadata column is gone after a join: take what is needed of it first.
    named = (df.withColumn("_file", F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1))
             .withColumn("_index", F.col("_metadata.row_index")))
    return (named.join(F.broadcast(table), "_file")
            .withColumn(ROW, F.col("_offset") + F.col("_index") + F.lit(1))
            .drop("_file", "_offset", "_index"))


@dataclass(frozen=True)
class RawIds:
    """The record-id uniqueness rule over raw partitions: typed ids and their input row numbers."""

    policy: Any
    column: str

    def create(self) -> Any:
        return DuplicateIds(self.column).create()

    def add(self, state: Any, batch: pa.RecordBatch) -> Any:
        from release.validate import typed_ids

        raw = raw_frame(batch.select([self.column]))
        ids = typed_ids(raw, self.policy)
        assert ids is not None  # the caller checked the column is declared and present
        rows = batch.column(batch.schema.get_field_index(ROW)).to_numpy(zero_copy_only=False)
        return DuplicateIds(self.column).add(
            state, pa.table({self.column: pa.array(ids.astype(object), from_pandas=True)}), rows=rows)

    def merge(self, a: Any, b: Any) -> Any:
        return DuplicateIds(self.column).merge(a, b)

    def finish(self, state: Any) -> np.ndarray:
        return DuplicateIds(self.column).finish(state)


@dataclass(frozen=True)
class ValidateOnly:
    """Validation alone over raw partitions (when columns are missing the steps cannot run): the merged report."""

    policy: Any
    now: Any
    exclude: tuple[int, ...]

    def create(self) -> Any:
        return None

    def add(self, state: Any, batch: pa.RecordBatch) -> Any:
        from release.validate import merge_reports, validate_batch

        rows = batch.column(batch.schema.get_field_index(ROW)).to_numpy(zero_copy_only=False)
        raw = raw_frame(batch.drop_columns([ROW]))
        rep = validate_batch(raw, self.policy, self.now, rows, exclude_rows=np.asarray(self.exclude, dtype=np.int64))[1]
        return rep if state is None else merge_reports(state, rep)

    def merge(self, a: Any, b: Any) -> Any:
        from release.validate import merge_reports

        return b if a is None else a if b is None else merge_reports(a, b)

    def finish(self, state: Any) -> Any:
        return state


def step_secrets(policy: Any) -> dict[str, str | None]:
    """Environment variables the policy's steps read their keys from (`secret_env`), as the driver has them.

    Executors do not share the driver's environment: the pipeline's task carries these values and
    sets them in each Python worker's environment. They are never logged or written by the engine
    (encrypt Spark's RPC and local disks on a shared cluster: docs/spark.md).
    """
    import os

    names = {getattr(step, "secret_env", None) for step in policy.steps}
    return {n: os.environ.get(n) for n in sorted(x for x in names if isinstance(x, str))}


def sparkable(schema: pa.Schema) -> pa.Schema:
    """The pipeline's schema as Spark can hold it: nanosecond timestamps become microseconds (naive)."""
    return pa.schema([pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type)
                      for f in schema])


def duplicate_rows(df: Any, policy: Any) -> np.ndarray:
    """Input row numbers whose record id occurs more than once, over every partition."""
    rid = policy.input.record_id
    if rid is None or rid not in df.columns or rid not in policy.input.columns:
        return np.zeros(0, dtype=np.int64)
    (rows,) = accumulate(df.select(rid, ROW), [RawIds(policy, rid)])
    return np.asarray(rows, dtype=np.int64)


RESULT_PIECE_BYTES = 4 << 20
"Size of the pieces a partition's merged BatchResult travels in (a partition at a time to the driver)."


def _unframe(data: bytes) -> bytes:
    """The value inside a partition's joined pieces (its first 8 bytes give its length)."""
    if len(data) < 8 or len(data) - 8 != int.from_bytes(data[:8], "little"):
        raise InternalError("a partition's pipeline result arrived cut short (this is a bug)")
    return data[8:]


def _results(mapped: Any) -> list[bytes]:
    """Each partition's pickled result, from its pieces (rows with a non-null RESULT), in partition order.

    The pieces are spread one per task (a round-robin shuffle into as many partitions as there are
    pieces) and read a task at a time: a task's result stays near RESULT_PIECE_BYTES. At ten million
    records a partition's whole result (83 MB) as one task result was lost from the block manager
    (TaskResultLost) or ran the JVM heap out. Each piece carries its partition and its place in it.
    """
    from pyspark.sql import functions as F

    pieces = mapped.where(F.col(RESULT).isNotNull()).select(
        F.spark_partition_id().alias("_part"), F.monotonically_increasing_id().alias("_seq"), RESULT)
    n = pieces.count()  # the first action: runs the pipeline once, into the persisted frame
    got: dict[int, list[tuple[int, bytes]]] = {}
    # One piece at a time, none prefetched: Spark pickles each binary row through a few copies of it.
    for part_id, seq, data in pieces.repartition(max(1, n)).toLocalIterator(prefetchPartitions=False):
        got.setdefault(part_id, []).append((seq, data))
    return [_unframe(b"".join(d for _, d in sorted(ps))) for _, ps in sorted(got.items())]


def run_pipeline(df: Any, pipe: Any, files: Any = None) -> tuple[Any, BatchResult, Any]:
    """(rows after the pipeline, the merged BatchResult, the persisted frame to unpersist), in one pass.

    The pipeline runs once per partition: its output is persisted, the results are read from it,
    and the rows are read from it again by whatever comes next. `files` (release.spark.files.ShippedFiles):
    the network, layer and hierarchy files the steps read, as the driver shipped them.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    out = sparkable(pipe.output_schema())
    with_result = out.append(pa.field(RESULT, pa.large_binary()))
    env = step_secrets(pipe.context.policy)
    piece = RESULT_PIECE_BYTES  # read on the driver: the closure carries it to the workers

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import os

        from release.errors import ReleaseError

        # The steps' secrets from the driver's environment, into this worker's (never written); a key
        # the driver lacks is removed here too, so the step fails as it does in the local runner.
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if files is not None:
            # The steps read their files through `trusted_path`: here, the copies the driver shipped.
            pipe._step_context().options["_trusted"] = files
        acc: BatchResult | Exception | None = None
        tail = [pa.nulls(1, f.type) for f in out]
        try:
            for batch in it:
                rows, res = pipe.process(batch)
                acc = res if acc is None else acc.merge(res)  # type: ignore[union-attr]
                cols = [rows.column(i).cast(out.field(i).type) for i in range(len(out))]
                yield pa.RecordBatch.from_arrays([*cols, pa.nulls(rows.num_rows, pa.large_binary())],
                                                 schema=with_result)
        except ReleaseError as e:
            # A user error (a missing key, a bad file) goes to the driver as it is: exit 2, not a crash.
            acc = e
        blob = pickle.dumps(acc if acc is not None else BatchResult(), protocol=5)
        # The merged result can be large (snap and withhold keep per-record states: ~83 MB for 1.25M
        # records): it travels as pieces of RESULT_PIECE_BYTES, the first prefixed by the whole length.
        framed = len(blob).to_bytes(8, "little") + blob
        for off in range(0, len(framed), piece):  # pieces of one value, not records
            yield pa.RecordBatch.from_arrays([*tail, pa.array([framed[off:off + piece]], pa.large_binary())],
                                             schema=with_result)

    mapped = df.mapInArrow(part, spark_schema(with_result)).persist(StorageLevel.MEMORY_AND_DISK)
    parts = [pickle.loads(b) for b in _results(mapped)]
    failed = [p for p in parts if isinstance(p, Exception)]
    if failed:
        mapped.unpersist()
        raise failed[0]
    result = reduce(lambda a, b: a.merge(b), parts, BatchResult())
    rows = mapped.where(F.col(RESULT).isNull()).drop(RESULT)
    return rows, result, mapped
