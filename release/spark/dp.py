"""DP tables on Spark: contribution bounding with window functions and exact counts with a group-by.

The rows kept are those release.dp.bounding keeps, in the JVM alone: the keyed row (and cell) scores
are Spark's xxhash64 behind a key-derived prefix (release.dp.rowhash.spark_row_score), which the
local runner computes bit for bit in numpy; each unit keeps the rows a window function ranks first
by that score, and one group-by counts them. No Python worker runs on this path. Where a column's
type has no equal Spark expression (not a declared pipeline type), the rows of units over the bound
are bounded partition-wise by release.dp.bounding.bound_contributions itself in Python workers
(`BoundPartition`). Only the exact aggregate travels to the driver: one row per combination of the
`by` values among the eligible rows (at most the key grid, or the distinct values of 'discover'
columns), where DPTableOutput.build_from_groups draws OpenDP's noise once, after the budget is reserved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from release.dp.rowhash import NotNative as _RowHashNotNative

_STATS = ("rows_in", "rows_kept", "units_over_bound", "units_truncated")


@dataclass(frozen=True)
class BoundPartition:
    """Executor side, a whole partition of over-bound units (all rows of each unit in it): the local
    runner's own bounding (release.dp.bounding.bound_contributions), then the kept rows' groups.

    Emits one row per `by` combination (`_n`, `_sum`) and one last row carrying the partition's
    bounding statistics (additive: no unit spans two partitions).
    """

    by: tuple[str, ...]
    unit: str
    key: bytes | int
    max_records: int
    max_groups: int | None
    columns: tuple[str, ...]
    "The pipeline's columns (a row's score is keyed on all of them)."
    rows: pa.Schema
    "Their Arrow schema as Spark holds them."
    out: pa.Schema

    def __call__(self, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from release.batches import to_frame
        from release.dp.bounding import bound_contributions, bounding_key

        batches = [b for b in it if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        frame = to_frame(table.select(list(self.columns)).cast(self.rows))
        keep, stats = bound_contributions(frame, self.unit, None, list(self.by), self.max_records, self.max_groups,
                                          bounding_key(self.key))
        kept = frame.loc[keep, list(self.by)].assign(_v=table.column("_v").to_numpy()[keep])
        g = kept.groupby(list(self.by), dropna=False, sort=False, observed=True)["_v"].agg(["size", "sum"])
        g = g.reset_index()
        n = len(g)
        cols = [pa.array(g[c], type=self.out.field(c).type, from_pandas=True) for c in self.by]
        body = [*cols, pa.array(g["size"].to_numpy(dtype=np.int64)), pa.array(g["sum"].to_numpy(dtype=np.int64)),
                *[pa.nulls(n, pa.int64()) for _ in _STATS]]
        yield pa.RecordBatch.from_arrays(body, schema=self.out)
        tail = [pa.nulls(1, self.out.field(c).type) for c in self.by] + [pa.nulls(1, pa.int64())] * 2
        tail += [pa.array([int(stats[k])], pa.int64()) for k in _STATS]
        yield pa.RecordBatch.from_arrays(tail, schema=self.out)


class NotNative(Exception):
    """A DP table this module does not aggregate on Spark (its rows go to the driver's build instead)."""


def _eligible(rows: Any, out: Any, public: tuple[tuple[str, ...] | None, ...], value: str | None) -> Any:
    """The rows that can count, with the clipped value `_v`, as Spark expressions (no Python worker).

    Key columns compare as text the way release.dp.keys.as_text writes them: strings as they are,
    integers in decimal, booleans 'true'/'false' (Spark's casts to string write the same); any other
    type is left to the driver's build.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, IntegralType, NumericType, StringType

    types = {f.name: f.dataType for f in rows.schema.fields}
    cond = F.lit(True)
    for c, ks in zip(out.by, public, strict=True):
        t = types[c]
        if ks is None:
            cond = cond & F.col(c).isNotNull()
            continue
        if not isinstance(t, StringType | IntegralType | BooleanType):
            raise NotNative(f"key column {c} of type {t.simpleString()}")
        text = F.col(c) if isinstance(t, StringType) else F.col(c).cast("string")
        cond = cond & text.isNotNull() & text.isin(list(ks))
    if value is not None:
        if not isinstance(types[value], NumericType):
            raise NotNative(f"value column {value} of type {types[value].simpleString()}")
        lo, hi = out.bounds
        v = F.rint(F.coalesce(F.col(value).cast("double"), F.lit(0.0)))
        v = F.least(F.greatest(v, F.lit(float(lo))), F.lit(float(hi))).cast("long")
    else:
        v = F.lit(0).cast("long")
    return rows.where(cond).withColumn("_v", v)


def bounded_groups(rows: Any, out: Any, ctx: Any) -> tuple[pd.DataFrame, dict[str, int]]:
    """(exact aggregate of the kept rows per `by` combination, bounding statistics) for one DP table.

    Spark alone, with no Python worker: each row's keyed score (release.dp.rowhash.spark_row_score,
    the score release.dp.bounding ranks by) and, under a cell bound, each (unit, cell)'s; window
    ranks per unit; one group-by of the eligible rows counting the kept ones and the statistics.
    Where a column's type has no Spark expression equal to the local score (not a type the pipeline
    declares), the rows of units over the bound go through the local runner's own function in Python
    workers instead (`_bounded_in_python`). Raises NotNative for key or value types compared
    differently as text (the caller then builds the table on the driver).
    """
    from release.dp import keys as K

    policy = ctx.policy
    unit = policy.budget.privacy_unit
    public = tuple(None if (ks := K.public_keys(out.keys[c], c, ctx.schema)) is None else tuple(ks) for c in out.by)
    value = out.column if out.statistic in ("sum", "mean") else None
    columns = tuple(rows.columns)
    e = _eligible(rows, out, public, value)
    if unit == policy.input.record_id:
        from pyspark.sql import functions as F

        from release.batches import to_frame

        # Record ids are validated unique: each unit has one row, within any bound.
        agg = [F.count(F.lit(1)).alias("_n"), F.sum("_v").alias("_sum")]
        frame = _groups(to_frame(e.groupBy(*out.by).agg(*agg).toArrow()), value)
        n = int(frame["_n"].sum()) if len(frame) else 0
        return frame, {"rows_in": n, "rows_kept": n, "units_over_bound": 0, "units_truncated": 0}
    try:
        kinds = _score_kinds(ctx, rows, columns)
    except _RowHashNotNative:
        return _bounded_in_python(e, out, ctx, columns, value)
    return _bounded_natively(e, out, ctx, kinds, value)


def _score_kinds(ctx: Any, rows: Any, columns: tuple[str, ...]) -> dict[str, str]:
    """How each column enters the row score: the kind of its declared type (the local frame's), where
    Spark's own type can be cast to it; raises rowhash.NotNative otherwise."""
    from release.dp.rowhash import arrow_kind, spark_kind

    declared = _declared(ctx, rows, columns)
    types = {f.name: f.dataType for f in rows.schema.fields}
    kinds = {}
    for c in columns:
        want = arrow_kind(declared.field(c).type)
        have = spark_kind(types[c])
        if want != have and not (want == "string" or {want, have} <= {"long", "double"}):
            raise _RowHashNotNative(f"column {c}: declared {want}, Spark holds {have}")
        kinds[c] = want
    return kinds


def _bounded_natively(e: Any, out: Any, ctx: Any, kinds: dict[str, str],
                      value: str | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The bounding as window functions over the JVM-computed scores, then one group-by (see bounded_groups).

    Without a cell bound: rn = row_number() over (partition by unit order by score); a row is kept
    when rn <= max_records. With one: cr = dense_rank() over (partition by unit order by cell score)
    (the unit's distinct cells in score order), then rn = row_number() over (partition by unit order
    by cr > max_groups, score): the kept rows are a prefix of that order (cells kept, then the least
    scores). A null unit is one row: always kept. Statistics ride on the group-by as marker sums:
    a unit is over the bound when its row number limit + 1 exists, truncated when its first row not
    kept exists (one marker per unit, so sums count units).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from release.batches import to_frame
    from release.dp.bounding import BoundingKey, bounding_key
    from release.dp.rowhash import spark_row_score

    policy = ctx.policy
    unit = policy.budget.privacy_unit
    s = out.share
    max_records, max_groups = int(s["max_records"]), s["max_groups"]
    by = list(out.by)
    key = bounding_key(ctx.run_key or ctx.seed)
    u = F.col(unit)
    score = spark_row_score(sorted(kinds.items()), key.subkey(BoundingKey.ROW))
    e = e.withColumn("__rs", score)
    cell_bound = max_groups is not None and bool(by)
    if cell_bound:
        limit = min(max_records, int(max_groups))
        cell_cols = list(dict.fromkeys([unit, *by]))
        cscore = spark_row_score([(c, kinds[c]) for c in cell_cols], key.subkey(BoundingKey.CELL))
        w1 = Window.partitionBy(u).orderBy(cscore)
        e = e.withColumn("__cr", F.dense_rank().over(w1)).withColumn("__r1", F.row_number().over(w1))
        dropped = F.col("__cr") > F.lit(int(max_groups))
        w2 = Window.partitionBy(u).orderBy(dropped, F.col("__rs"))
        e = e.withColumn("__rn", F.row_number().over(w2)).withColumn("__lag", F.lag("__cr").over(w2))
        rn = F.col("__rn")
        kept = u.isNull() | (~dropped & (rn <= max_records))
        over = u.isNotNull() & (F.col("__r1") == limit + 1)
        # The first row not kept: row max_records + 1 of the kept cells, or the first row of a dropped
        # cell when the kept cells have at most max_records rows (its predecessor is a kept cell's).
        first_out = (((rn == max_records + 1) & ~dropped)
                     | (dropped & (F.col("__lag") <= F.lit(int(max_groups))) & (rn <= max_records + 1)))
        truncated = u.isNotNull() & first_out
    else:
        w = Window.partitionBy(u).orderBy(F.col("__rs"))
        e = e.withColumn("__rn", F.row_number().over(w))
        rn = F.col("__rn")
        kept = u.isNull() | (rn <= max_records)
        over = truncated = u.isNotNull() & (rn == max_records + 1)
    one, zero = F.lit(1).cast("long"), F.lit(0).cast("long")
    agg = [F.sum(F.when(kept, one).otherwise(zero)).alias("_n"),
           F.sum(F.when(kept, F.col("_v")).otherwise(zero)).alias("_sum"),
           F.count(F.lit(1)).alias("rows_in"),
           F.sum(F.when(over, one).otherwise(zero)).alias("units_over_bound"),
           F.sum(F.when(truncated, one).otherwise(zero)).alias("units_truncated")]
    got = to_frame(e.groupBy(*by).agg(*agg).toArrow())
    stats = {k: int(got[k].sum()) if len(got) else 0 for k in ("rows_in", "units_over_bound", "units_truncated")}
    stats["rows_kept"] = int(got["_n"].sum()) if len(got) else 0
    # Combinations only dropped rows hold are not in the kept rows' aggregate (nor in 'discover' keys).
    got = got.loc[got["_n"].astype("int64") > 0, [*by, "_n", "_sum"]].reset_index(drop=True)
    return _groups(got, value), {k: stats[k] for k in _STATS}


def _bounded_in_python(e: Any, out: Any, ctx: Any, columns: tuple[str, ...],
                       value: str | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The fallback: units within the bound counted by Spark alone (a window count per unit, a group-by);
    the rows of units over it shuffled by unit and bounded partition-wise by the local runner's own
    function (BoundPartition)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from release.batches import to_frame
    from release.spark.rows import sparkable
    from release.spark.stages import spark_schema

    policy = ctx.policy
    unit = policy.budget.privacy_unit
    s = out.share
    max_records, max_groups = int(s["max_records"]), s["max_groups"]
    by = list(out.by)
    agg = [F.count(F.lit(1)).alias("_n"), F.sum("_v").alias("_sum")]
    cell_bound = max_groups is not None and bool(by)
    limit = min(max_records, max_groups) if cell_bound else max_records
    u = F.col(unit)
    # Null units are one row each (never bounded); text units group by their value here, by their
    # keyed id in bound_contributions (a 2**-64 merge there only makes bounding stricter).
    e2 = e.withColumn("_cnt", F.when(u.isNull(), F.lit(1)).otherwise(F.count(F.lit(1)).over(Window.partitionBy(u))))
    in_schema = sparkable(_declared(ctx, e, columns))
    out_schema = pa.schema([*[in_schema.field(c) for c in by], pa.field("_n", pa.int64()),
                            pa.field("_sum", pa.int64()), *[pa.field(k, pa.int64()) for k in _STATS]])
    whole = e2.where(F.col("_cnt") <= limit).groupBy(*by).agg(*agg).select(
        *by, "_n", "_sum", *[F.lit(None).cast("long").alias(k) for k in _STATS])
    # No second shuffle: the window's exchange already put every row of a unit in one partition (hash of
    # the unit), and the filter and mapInArrow keep partitions as they are.
    big = e2.where(F.col("_cnt") > limit).drop("_cnt").repartition(u)
    fn = BoundPartition(tuple(by), unit, ctx.run_key or ctx.seed, max_records, max_groups, columns, in_schema,
                        out_schema)
    # One job: both branches read the same window exchange (Spark reuses it within a plan).
    got = whole.unionByName(big.mapInArrow(fn, spark_schema(out_schema))).toArrow()
    stats_rows = got.filter(pc.is_valid(got.column("rows_in")))
    parts = to_frame(got.filter(pc.is_null(got.column("rows_in"))).select([*by, "_n", "_sum"]))
    stats = {k: int(pc.sum(stats_rows.column(k)).as_py() or 0) for k in _STATS}
    # Rows of units within the bound: in and kept alike (they sit in `parts` beside the bounded ones).
    n_all = int(parts["_n"].sum()) if len(parts) else 0
    n_whole = n_all - stats["rows_kept"]
    stats["rows_in"] += n_whole
    stats["rows_kept"] += n_whole
    return _groups(_collapse(parts, by), value), stats


def _groups(frame: pd.DataFrame, value: str | None) -> pd.DataFrame:
    """The aggregate build_from_groups reads: `_n` always, `_sum` for sums and means only."""
    frame = frame.copy()
    frame["_n"] = frame["_n"].astype("int64")
    if value is None:
        return frame.drop(columns=["_sum"])
    frame["_sum"] = frame["_sum"].fillna(0).astype("int64")
    return frame


def _declared(ctx: Any, rows: Any, columns: tuple[str, ...]) -> pa.Schema:
    """The Arrow schema of these columns as the driver frame would hold them (the pipeline's declared types)."""
    from release.batches import arrow_schema
    from release.spark.stages import arrow_schema as spark_arrow

    try:
        declared = arrow_schema(ctx.schema)
        return pa.schema([declared.field(c) for c in columns])
    except (KeyError, AttributeError, TypeError):
        held = spark_arrow(rows)  # rows not from a pipeline (benchmarks, tests): as Spark holds them
        return pa.schema([held.field(c) for c in columns])


def _collapse(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Aggregates of disjoint rows as one: counts and sums added per `by` combination."""
    if not len(frame):
        return frame.reset_index(drop=True)
    vals = [c for c in frame.columns if c not in by]
    return frame.groupby(by, dropna=False, sort=False, observed=True)[vals].sum().reset_index()
