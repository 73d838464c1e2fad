"""DP tables on Spark: contribution bounding with window functions and exact counts with a group-by.

The rows kept are those release.dp.bounding keeps (the same keyed scores, computed on the executors
by the same functions): per unit over the bound, its distinct cells ranked by their keyed (unit,
cell) score, then its rows by their keyed row score (row digest and occurrence among identical
rows). Only the exact aggregate travels to the driver: one row per combination of the `by`
values among the kept rows (at most the key grid, or the distinct values of 'discover' columns),
where DPTableOutput.build_from_groups draws OpenDP's noise once, after the budget is reserved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_SIGN = np.uint64(1 << 63)


def _ordered(u: np.ndarray) -> np.ndarray:
    """uint64 scores as int64 with the same order (Spark has no unsigned type)."""
    return (u ^ _SIGN).view(np.int64)


@dataclass(frozen=True)
class Eligible:
    """Executor side, per batch of the pipeline's rows: the rows that can count, with their unit and value.

    Adds `_u` (unit id: integer ids as they are, text ids keyed), `_null` (a null unit: its own
    unit, never bounded) and `_v` (the clipped value of sums and means) to every column; only the
    unit, `by` and value columns are converted (the rest pass through as Arrow).
    """

    by: tuple[str, ...]
    public: tuple[tuple[str, ...] | None, ...]
    "Public key list per `by` column (None: discovered; the row only needs a value)."
    unit: str
    key: bytes
    value_column: str | None
    bounds: tuple[int, int] | None

    def schema(self, rows: pa.Schema) -> pa.Schema:
        return pa.schema([*rows, pa.field("_u", pa.int64()), pa.field("_null", pa.bool_()),
                          pa.field("_v", pa.int64())])

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        from release.batches import to_frame
        from release.dp import keys as K
        from release.dp.bounding import bounding_key, unit_ids

        need = list(dict.fromkeys([*self.by, self.unit, *([self.value_column] if self.value_column else [])]))
        frame = to_frame(batch.select(need))
        eligible = np.ones(len(frame), dtype=bool)
        for c, ks in zip(self.by, self.public, strict=True):
            eligible &= frame[c].notna().to_numpy() if ks is None else K.column_codes(frame[c], list(ks)) >= 0
        ids, nulls = unit_ids(frame[self.unit], bounding_key(self.key))
        if self.value_column is not None and self.bounds is not None:
            v = pd.to_numeric(frame[self.value_column], errors="coerce").fillna(0).to_numpy(dtype=float)
            vals = np.clip(np.rint(v), self.bounds[0], self.bounds[1]).astype(np.int64)
        else:
            vals = np.zeros(len(frame), dtype=np.int64)
        idx = pa.array(np.flatnonzero(eligible))
        cols = [*batch.take(idx).columns, pa.array(ids).take(idx), pa.array(nulls).take(idx),
                pa.array(vals).take(idx)]
        return pa.RecordBatch.from_arrays(cols, schema=self.schema(batch.schema))


@dataclass(frozen=True)
class PairScores:
    """Executor side, rows of units over the bound only: row digest `_d` and keyed (unit, cell) score `_p`.

    The digest is over the pipeline's columns typed as the driver frame holds them
    (release.batches.to_frame), so it is the one release.dp.bounding computes in the local runner.
    """

    by: tuple[str, ...]
    key: bytes
    columns: tuple[str, ...]
    "The pipeline's columns (the digest's input, in order)."
    rows: pa.Schema
    "Their Arrow schema as Spark holds them."
    out: pa.Schema

    def __call__(self, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from release.batches import keyed_u64, row_digest, subkey, to_frame

        sub = subkey(self.key, "dp-bounding-cell")
        for b in it:
            frame = to_frame(b.select(list(self.columns)).cast(self.rows))
            digest = row_digest(frame)
            ids = b.column(b.schema.get_field_index("_u")).to_numpy(zero_copy_only=False)
            pair = keyed_u64(row_digest(frame[list(self.by)].assign(_unit=ids)), sub)
            keep = [b.column(b.schema.get_field_index(c)) for c in self.out.names[:-2]]
            yield pa.RecordBatch.from_arrays([*keep, pa.array(digest.view(np.int64)), pa.array(_ordered(pair))],
                                             schema=self.out)


@dataclass(frozen=True)
class RowScores:
    """Executor side: the keyed row score from the digest and the occurrence among identical rows."""

    key: bytes
    schema: pa.Schema

    def __call__(self, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from release.batches import keyed_u64, subkey

        sub = subkey(self.key, "dp-bounding-row")
        for b in it:
            d = b.column(b.schema.get_field_index("_d")).to_numpy(zero_copy_only=False).view(np.uint64)
            occ = b.column(b.schema.get_field_index("_occ")).to_numpy(zero_copy_only=False).astype(np.uint64)
            with np.errstate(over="ignore"):
                s = keyed_u64(d ^ (occ * np.uint64(0x9E3779B97F4A7C15)), sub)
            yield b.append_column("_s", pa.array(_ordered(s)))




def bounded_groups(rows: Any, out: Any, ctx: Any) -> tuple[pd.DataFrame, dict[str, int]]:
    """(exact aggregate of the kept rows per `by` combination, bounding statistics) for one DP table.

    Units within the bound (most, usually) are only counted: the hashing that ranks rows runs on
    the rows of units over it. What comes back: the groups of the rows kept whole, those of the
    over-bound units' kept rows (added up here), and one row of statistics.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from release.batches import to_frame
    from release.dp import keys as K
    from release.spark.rows import sparkable
    from release.spark.stages import arrow_schema, spark_schema

    policy = ctx.policy
    unit = policy.budget.privacy_unit
    s = out.share
    max_records, max_groups = int(s["max_records"]), s["max_groups"]
    public = tuple(None if (ks := K.public_keys(out.keys[c], c, ctx.schema)) is None else tuple(ks) for c in out.by)
    value = out.column if out.statistic in ("sum", "mean") else None
    by = list(out.by)
    columns = tuple(rows.columns)
    in_schema = sparkable(_declared(ctx, rows, columns))
    elig = Eligible(tuple(by), public, unit, ctx.run_key, value, out.bounds)

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            yield elig(b.cast(in_schema) if b.schema != in_schema else b)

    e = rows.mapInArrow(part, spark_schema(elig.schema(in_schema)))
    agg = [F.count(F.lit(1)).alias("_n")]
    if value is not None:
        agg.append(F.sum("_v").alias("_sum"))
    if unit == policy.input.record_id:
        # Record ids are validated unique: each unit has one row, within any bound.
        frame = to_frame(e.groupBy(*by).agg(*agg).toArrow())
        n = int(frame["_n"].sum()) if len(frame) else 0
        return frame, {"rows_in": n, "rows_kept": n, "units_over_bound": 0, "units_truncated": 0}
    cell_bound = max_groups is not None and bool(by)
    limit = min(max_records, max_groups) if cell_bound else max_records
    w = Window.partitionBy("_u")
    e2 = e.withColumn("_cnt", F.when(F.col("_null"), F.lit(1)).otherwise(F.count(F.lit(1)).over(w)))
    e2 = e2.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        whole = to_frame(e2.where(F.col("_cnt") <= limit).groupBy(*by).agg(*agg).toArrow())
        big = e2.where(F.col("_cnt") > limit)
        scored_schema = pa.schema([*[in_schema.field(c) for c in by], pa.field("_u", pa.int64()),
                                   pa.field("_v", pa.int64()), pa.field("_d", pa.int64()), pa.field("_p", pa.int64())])
        scored = big.mapInArrow(PairScores(tuple(by), ctx.run_key, columns, in_schema, scored_schema),
                                spark_schema(scored_schema))
        if cell_bound:
            scored = scored.withColumn("_pr", F.dense_rank().over(w.orderBy("_p"))).where(F.col("_pr") <= max_groups)
        scored = scored.withColumn("_c2", F.count(F.lit(1)).over(w))
        kept_a = scored.where(F.col("_c2") <= max_records).select(*by, "_u", "_v")
        over = scored.where(F.col("_c2") > max_records).withColumn(
            "_occ", F.row_number().over(Window.partitionBy("_u", "_d").orderBy("_p")) - 1)
        ranked_schema = arrow_schema(over).append(pa.field("_s", pa.int64()))
        ranked = over.mapInArrow(RowScores(ctx.run_key, ranked_schema), spark_schema(ranked_schema))
        kept_b = ranked.withColumn("_rk", F.row_number().over(w.orderBy("_s"))).where(
            F.col("_rk") <= max_records).select(*by, "_u", "_v")
        kept_big = kept_a.unionByName(kept_b).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            part_groups = to_frame(kept_big.groupBy(*by).agg(*agg).toArrow())
            # One row of statistics: units over the bound, the rows they hold, those that lost rows.
            units = big.groupBy("_u").agg(F.count(F.lit(1)).alias("_n0")).join(
                kept_big.groupBy("_u").agg(F.count(F.lit(1)).alias("_n1")), "_u", "left")
            st = units.agg(F.count(F.lit(1)).alias("over"), F.sum("_n0").alias("rows_over"),
                           F.sum(F.when(F.coalesce(F.col("_n1"), F.lit(0)) < F.col("_n0"), 1).otherwise(0))
                           .alias("truncated")).collect()[0]
        finally:
            kept_big.unpersist()
    finally:
        e2.unpersist()
    frame = _sum_groups(whole, part_groups, by)
    n_over = int(st["over"] or 0)
    stats = {"rows_in": (int(whole["_n"].sum()) if len(whole) else 0) + int(st["rows_over"] or 0),
             "rows_kept": int(frame["_n"].sum()) if len(frame) else 0,
             "units_over_bound": n_over, "units_truncated": int(st["truncated"] or 0) if cell_bound else n_over}
    return frame, stats


def _declared(ctx: Any, rows: Any, columns: tuple[str, ...]) -> pa.Schema:
    """The Arrow schema of these columns as the driver frame would hold them (the pipeline's declared types)."""
    from release.batches import arrow_schema
    from release.spark.stages import arrow_schema as spark_arrow

    try:
        declared = arrow_schema(ctx.schema)
        return pa.schema([declared.field(c) for c in columns])
    except (KeyError, AttributeError, TypeError):
        return spark_arrow(rows)  # rows not from a pipeline (benchmarks, tests): as Spark holds them


def _sum_groups(a: pd.DataFrame, b: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Two aggregates of disjoint rows as one (counts and sums added per `by` combination)."""
    if not len(b):
        return a.reset_index(drop=True)
    if not len(a):
        return b.reset_index(drop=True)
    both = pd.concat([a, b], ignore_index=True)
    vals = [c for c in both.columns if c not in by]
    return both.groupby(by, dropna=False, sort=False, observed=True)[vals].sum().reset_index()
