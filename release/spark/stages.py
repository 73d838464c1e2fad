"""The two stage kinds on Spark: a row function applied partition-wise, an accumulator merged on the driver.

Both take the engine's own bound objects (the local runner's row pipeline and accumulators, see
release/batches.py) and ship them to executors by pickling: no step is written twice. Only
accumulator states travel back to the driver (one small binary value per partition).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import reduce
from typing import Any, Protocol

import pyarrow as pa


class Accumulator(Protocol):
    """The engine's aggregate contract (create / add / merge / finish); states small and picklable."""

    def create(self) -> Any: ...
    def add(self, state: Any, batch: pa.RecordBatch) -> Any: ...
    def merge(self, a: Any, b: Any) -> Any: ...
    def finish(self, state: Any) -> Any: ...


RowFunction = Callable[[pa.RecordBatch], "pa.RecordBatch | Iterable[pa.RecordBatch]"]


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark StructType of an Arrow schema (naive timestamps stay naive: TimestampNTZ)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def arrow_schema(df: Any) -> pa.Schema:
    """The Arrow schema Spark hands a Python worker for this DataFrame."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema, timezone="UTC")


def _batches(out: pa.RecordBatch | pa.Table | Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if isinstance(out, pa.RecordBatch):
        yield out
    elif isinstance(out, pa.Table):
        yield from out.to_batches()
    else:
        yield from out


def map_batches(df: Any, fn: RowFunction, out_schema: pa.Schema) -> Any:
    """df with `fn` applied to every Arrow batch of every partition (Spark's mapInArrow).

    The output is cast to `out_schema` so Spark sees exactly the declared schema (an empty batch
    or an all-null column must not change a type).
    """

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in it:
            for out in _batches(fn(batch)):
                yield out.cast(out_schema) if out.schema != out_schema else out

    return df.mapInArrow(part, spark_schema(out_schema))


_STATE = pa.schema([("part", pa.int64()), ("state", pa.large_binary())])


def accumulate(df: Any, accs: Sequence[Accumulator]) -> list[Any]:
    """Finished results of several accumulators over df, in ONE pass over the data.

    Each partition folds its batches into fresh states and emits them pickled as one row; the
    driver merges the partitions' states and finishes them. Merge order does not matter: the
    engine's accumulators are batch-invariant (and the states are sorted by partition anyway).
    """
    accs = list(accs)

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        states = [a.create() for a in accs]
        for batch in it:
            states = [a.add(s, batch) for a, s in zip(accs, states, strict=True)]
        tc = TaskContext.get()
        pid = tc.partitionId() if tc is not None else 0
        yield pa.RecordBatch.from_arrays([pa.array([pid], pa.int64()),
                                          pa.array([pickle.dumps(states, protocol=5)], pa.large_binary())],
                                         schema=_STATE)

    from pyspark.sql.types import BinaryType, LongType, StructField, StructType

    got = df.mapInArrow(part, StructType([StructField("part", LongType()), StructField("state", BinaryType())]))
    table = got.toArrow().sort_by("part")
    partials = [pickle.loads(b) for b in table.column("state").to_pylist()]
    merged = [reduce(a.merge, (p[i] for p in partials), a.create()) for i, a in enumerate(accs)]
    return [a.finish(s) for a, s in zip(accs, merged, strict=True)]


STREAM_BLOB_ROWS = 65_536
"Rows per Arrow IPC blob when rows stream to the driver (a few MB each; one partition held at a time)."


def stream_batches(df: Any, rows_per_blob: int = STREAM_BLOB_ROWS) -> Iterator[pa.RecordBatch]:
    """Every row of df on the driver as Arrow batches, one partition at a time (toLocalIterator).

    Each partition's batches travel as Arrow IPC blobs (a binary column, one value per slice of
    `rows_per_blob` rows), so the driver never holds more than a partition or two: what a records
    output at ten million rows needs, where collecting every row at once exhausts the driver's heap.
    Order is partition order; the caller sorts (the engine's external sort).
    """
    from pyspark.sql.types import BinaryType, StructField, StructType

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            for off in range(0, b.num_rows, rows_per_blob):  # slices of a batch, not rows
                sink = pa.BufferOutputStream()
                piece = b.slice(off, rows_per_blob)
                with pa.ipc.new_stream(sink, piece.schema) as w:
                    w.write_batch(piece)
                yield pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())],
                                                 names=["blob"])

    blobs = df.mapInArrow(part, StructType([StructField("blob", BinaryType())]))
    for row in blobs.toLocalIterator(prefetchPartitions=True):
        yield from pa.ipc.open_stream(pa.py_buffer(row["blob"])).read_all().to_batches()


def collect_batches(df: Any) -> list[pa.RecordBatch]:
    """Every row of df on the driver as Arrow batches (partition order; used for records outputs)."""
    batches: list[pa.RecordBatch] = df._collect_as_arrow(empty_list_if_zero_records=True)
    return batches
