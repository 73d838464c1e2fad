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
class BoundingColumns:
    """Executor side, per batch of the pipeline's rows: the eligible rows with what bounding ranks them by.

    Output columns: the `by` values, `_u` (unit id: integer ids as they are, text ids keyed),
    `_null` (null unit: its own unit, never bounded), `_d` (row digest over every column),
    `_p` (keyed (unit, cell) score), `_v` (clipped value, sums and means).
    """

    by: tuple[str, ...]
    public: tuple[tuple[str, ...] | None, ...]
    "Public key list per `by` column (None: discovered; the row only needs a value)."
    unit: str
    key: bytes
    value_column: str | None
    bounds: tuple[int, int] | None

    def schema(self, rows: pa.Schema) -> pa.Schema:
        fields = [rows.field(c) for c in self.by]
        fields = [pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in fields]
        return pa.schema([*fields, pa.field("_u", pa.int64()), pa.field("_null", pa.bool_()),
                          pa.field("_d", pa.int64()), pa.field("_p", pa.int64()), pa.field("_v", pa.int64())])

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        from release.batches import keyed_u64, row_digest, subkey, to_frame
        from release.dp import keys as K
        from release.dp.bounding import bounding_key, unit_ids

        frame = to_frame(batch)
        eligible = np.ones(len(frame), dtype=bool)
        for c, ks in zip(self.by, self.public, strict=True):
            eligible &= frame[c].notna().to_numpy() if ks is None else K.column_codes(frame[c], list(ks)) >= 0
        key = bounding_key(self.key)
        ids, nulls = unit_ids(frame[self.unit], key)
        digest = row_digest(frame)
        cells = frame[list(self.by)].assign(_unit=ids)
        pair = keyed_u64(row_digest(cells), subkey(self.key, "dp-bounding-cell"))
        if self.value_column is not None and self.bounds is not None:
            v = pd.to_numeric(frame[self.value_column], errors="coerce").fillna(0).to_numpy(dtype=float)
            vals = np.clip(np.rint(v), self.bounds[0], self.bounds[1]).astype(np.int64)
        else:
            vals = np.zeros(len(frame), dtype=np.int64)
        idx = np.flatnonzero(eligible)
        out = [batch.column(batch.schema.get_field_index(c)).take(pa.array(idx)) for c in self.by]
        out += [pa.array(ids[idx]), pa.array(nulls[idx]), pa.array(digest[idx].view(np.int64)),
                pa.array(_ordered(pair[idx])), pa.array(vals[idx])]
        return pa.RecordBatch.from_arrays(out, schema=self.schema(batch.schema)).cast(self.schema(batch.schema))


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
    """(exact aggregate of the kept rows per `by` combination, bounding statistics) for one DP table."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from release.dp import keys as K
    from release.spark.stages import arrow_schema, spark_schema

    policy = ctx.policy
    unit = policy.budget.privacy_unit
    s = out.share
    max_records, max_groups = int(s["max_records"]), s["max_groups"]
    public = tuple(None if (ks := K.public_keys(out.keys[c], c, ctx.schema)) is None else tuple(ks) for c in out.by)
    value = out.column if out.statistic in ("sum", "mean") else None
    cols = BoundingColumns(tuple(out.by), public, unit, ctx.run_key, value, out.bounds)
    in_schema = _arrow(arrow_schema(rows))
    schema = cols.schema(in_schema)

    def part(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in it:
            yield cols(b.cast(in_schema) if b.schema != in_schema else b)

    e = rows.mapInArrow(part, spark_schema(schema)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        by = list(out.by)
        if unit == policy.input.record_id:
            # Record ids are validated unique: each unit has one row, within any bound.
            kept = e
            stats = {"units_over_bound": 0, "units_truncated": 0}
        else:
            cell_bound = max_groups is not None and bool(by)
            limit = min(max_records, max_groups) if cell_bound else max_records
            w = Window.partitionBy("_u")
            e2 = e.withColumn("_cnt", F.when(F.col("_null"), F.lit(1)).otherwise(F.count(F.lit(1)).over(w)))
            within = e2.where(F.col("_cnt") <= limit)
            big = e2.where(F.col("_cnt") > limit)
            if cell_bound:
                big = big.withColumn("_pr", F.dense_rank().over(w.orderBy("_p"))).where(F.col("_pr") <= max_groups)
            big = big.withColumn("_c2", F.count(F.lit(1)).over(w))
            kept_a = big.where(F.col("_c2") <= max_records)
            over = big.where(F.col("_c2") > max_records).withColumn(
                "_occ", F.row_number().over(Window.partitionBy("_u", "_d").orderBy("_p")) - 1)
            over_schema = arrow_schema(over)
            scored_schema = over_schema.append(pa.field("_s", pa.int64()))
            scored = over.mapInArrow(RowScores(ctx.run_key, scored_schema), spark_schema(scored_schema))
            kept_b = scored.withColumn("_rk", F.row_number().over(w.orderBy("_s"))).where(F.col("_rk") <= max_records)
            keep_cols = [*by, "_u", "_v"]
            kept = within.select(*keep_cols).unionByName(kept_a.select(*keep_cols)).unionByName(
                kept_b.select(*keep_cols))
            over_units = e2.where(F.col("_cnt") > limit).groupBy("_u").agg(F.count(F.lit(1)).alias("_n0"))
            n_over = over_units.count()
            if cell_bound and n_over:
                kept_per = kept_a.select("_u").unionByName(kept_b.select("_u")).groupBy("_u").agg(
                    F.count(F.lit(1)).alias("_n1"))
                truncated = over_units.join(kept_per, "_u", "left").where(
                    F.coalesce(F.col("_n1"), F.lit(0)) < F.col("_n0")).count()
            else:
                truncated = n_over
            stats = {"units_over_bound": int(n_over), "units_truncated": int(truncated)}
        agg = [F.count(F.lit(1)).alias("_n")]
        if value is not None:
            agg.append(F.sum("_v").alias("_sum"))
        groups = kept.groupBy(*by).agg(*agg).toArrow()
        rows_in = e.count()
    finally:
        e.unpersist()
    from release.batches import to_frame

    frame = to_frame(groups)
    n_kept = int(frame["_n"].sum()) if len(frame) else 0
    return frame, {"rows_in": int(rows_in), "rows_kept": n_kept, **stats}


def _arrow(schema: pa.Schema) -> pa.Schema:
    return schema
