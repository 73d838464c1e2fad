"""k-anonymity on Spark: the frequency table as one group-by, the engine's own search on the driver, the
recoding applied to the records in the JVM.

The step decides on the frequency table alone (KAnonymityStep.decide: one row per combination of
quasi-identifier, sensitive and protected values with its records); Spark computes that table with
one group-by, the driver puts it in the step's canonical order (so the search sees exactly what the
local runner's frequency_table gives) and runs the lattice search or local recoding there. The
decision, one published label per quasi-identifier and a removed flag per table row, goes back as
a small table keyed by the group-by's row ids and is applied by a join on the frequency columns
(null-safe: a missing value is a value of its own), no Python worker involved. What reaches the
driver is the frequency table: one row per distinct combination, never a record.
"""

from __future__ import annotations

import time
from functools import reduce
from typing import Any

import pandas as pd
import pyarrow as pa

_ID = "_ft_row"
_DROP = "_ft_drop"
BROADCAST_ROWS = 2_000_000
"Frequency tables up to this many rows are broadcast to the executors for the join (else a shuffle join)."


def runs_on_spark(step: Any, columns: list[str]) -> bool:
    """Whether the step can run as a group-by here: a k-anonymity step whose columns the rows hold (else the
    driver's step raises its own located error)."""
    return getattr(step, "type", None) == "k-anonymity" and all(c in columns for c in step.frequency_columns())


def adjusts_series(policy: Any, options: dict[str, Any]) -> bool:
    """Whether a k-anonymity step of this run moves joined records back to their values in earlier releases
    (a re-release series with `series.joint: keep-earlier | refine` and earlier releases found:
    release.series.records.keep_series, a record-level join of the whole output with the earlier files).
    The frequency table, the search and the recoding still run here; that adjustment runs on the driver over
    the collected recoded rows, and so does every step after it."""
    series = getattr(policy, "series", None)
    if series is None or series.joint == "block":
        return False
    from release.series.records import discovery_for_run

    disc = discovery_for_run(options)
    return disc is not None and bool(disc.predecessors)


def apply_k_anonymity(rows: Any, index: int, plan: Any, ctx: Any, progress: Any) -> tuple[Any, Any]:
    """Run policy step `index` (k-anonymity) over the Spark rows and record its evidence: (the recoded
    rows, the persisted frequency table they join, to unpersist once the rows are read)."""
    from pyspark.sql import functions as F

    from release.anonymize.step import COUNT, FIRST
    from release.batches import arrow_schema, to_frame
    from release.spark.rows import sparkable
    from release.spark.stages import spark_schema

    policy = ctx.policy
    step = policy.steps[index]
    ts = time.perf_counter()
    progress(f"step {index + 1}/{len(policy.steps)}: {step.describe()} (frequency table on Spark, search on the"
             " driver)")
    ctx.schema = plan.schemas[index]
    cols = step.frequency_columns()
    types = arrow_schema(plan.schemas[index])
    key_schema = pa.schema([types.field(c) for c in cols])
    # Time quasi-identifiers are grouped at their level 0 (the search never looks finer), with each
    # row's earliest raw time, as KAnonymityStep.frequency_table groups them.
    floors = step.level0_times()
    firsts = [FIRST + c for c in floors]

    def level0(c: str) -> Any:
        return F.date_trunc(floors[c].upper(), F.col(c)).cast("timestamp_ntz") if c in floors else F.col(c)

    pre = rows.select(*[level0(c).alias(c) for c in cols], *[F.col(c).alias(FIRST + c) for c in floors])
    ft_sdf = (pre.groupBy(*cols).agg(F.count(F.lit(1)).alias(COUNT), *[F.min(f).alias(f) for f in firsts])
              .withColumn(_ID, F.monotonically_increasing_id()).persist())
    got = ft_sdf.toArrow()
    keys = got.select(cols)
    keys = pa.Table.from_arrays([keys.column(c).cast(sparkable(key_schema).field(c).type) for c in cols],
                                schema=sparkable(key_schema)).cast(key_schema)
    ft = to_frame(keys)
    if firsts:
        first_schema = pa.schema([pa.field(FIRST + c, key_schema.field(c).type) for c in floors])
        ft = pd.concat([ft, to_frame(pa.Table.from_arrays(
            [got.column(f).cast(sparkable(first_schema).field(f).type) for f in firsts],
            schema=sparkable(first_schema)).cast(first_schema))], axis=1)
    ft[COUNT] = got.column(COUNT).to_numpy().astype("int64")
    ft[_ID] = got.column(_ID).to_numpy().astype("int64")
    ft = step.canonical_frequency(ft, carry=(_ID,))
    progress(f"  frequency table: {len(ft):,} combinations of {', '.join(cols)} on the driver")
    recoding, ev = step.decide(ft.drop(columns=[_ID]), ctx)
    decision = pd.DataFrame({_ID: ft[_ID].to_numpy(), _DROP: recoding.drop})
    for c in step.quasi_identifiers:
        decision[f"_lab_{c}"] = pd.array(recoding.labels[c], dtype="string")
    dschema = pa.schema([pa.field(_ID, pa.int64()), pa.field(_DROP, pa.bool_())] +
                        [pa.field(f"_lab_{c}", pa.string()) for c in step.quasi_identifiers])
    spark = rows.sparkSession
    dec_sdf = spark.createDataFrame(pa.Table.from_pandas(decision, schema=dschema, preserve_index=False),
                                    schema=spark_schema(dschema))
    keyed = ft_sdf.drop(COUNT, *firsts).join(dec_sdf, _ID).drop(_ID)
    keyed = keyed.select(*[F.col(c).alias(f"_key_{c}") for c in cols], _DROP,
                         *[f"_lab_{c}" for c in step.quasi_identifiers])
    if len(ft) <= BROADCAST_ROWS:
        keyed = F.broadcast(keyed)
    # By name: the keys are renamed, so no column is ambiguous although both sides descend from `rows`.
    cond = reduce(lambda a, b: a & b, [level0(c).eqNullSafe(F.col(f"_key_{c}")) for c in cols])
    joined = rows.join(keyed, cond, "inner").where(~F.col(_DROP))
    out_cols = [F.col(f"_lab_{c}").alias(c) if c in step.quasi_identifiers else F.col(c) for c in rows.columns]
    recoded = joined.select(*out_cols)
    ctx.schema = plan.schemas[index + 1]
    ctx.step_evidence.append({"index": index, "type": step.type, "seconds": round(time.perf_counter() - ts, 3),
                              **ev})
    return recoded, ft_sdf
