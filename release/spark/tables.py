"""`table` outputs on Spark: the cell counts as one group-by, then the engine's own suppression on the driver.

TableOutput.build_from_counts needs only the cell counts (release/tables/output.py: rows, sum of the
count column, rows with a missing count, per combination of the dimensions). Spark computes them
with one group-by over the rows the pipeline left; the driver receives one row per combination
present (at most the product of the dimensions' levels) and runs the margins, primary and secondary
suppression and the LP audit exactly as the local runner does on the counts of its own rows.

Where the rows themselves are at fault (a missing dimension value, a missing count the policy
refuses, a negative count), the group-by says so and the output is built on the driver from its
collected columns instead, so that the error names the same rows as in the local runner.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def cell_counts(rows: Any, out: Any, schema: Any) -> pd.DataFrame | None:
    """The output's cell counts as a Spark group-by, or None when the rows must go to the driver
    (not aggregable: see TableOutput.aggregable; or rows at fault: the driver's build names them)."""
    from pyspark.sql import functions as F

    from release.tables.output import CELL_ROWS, CELL_SUM, CELL_UNKNOWN

    if not out.aggregable(schema) or any(c not in rows.columns for c in out.referenced_columns()):
        return None
    by = out.group_columns()
    wcol = out.weight_column()
    aggs = [F.count(F.lit(1)).alias(CELL_ROWS)]
    if wcol is None:
        aggs += [F.count(F.lit(1)).cast("double").alias(CELL_SUM), F.lit(0).cast("long").alias(CELL_UNKNOWN),
                 F.lit(0).cast("long").alias("_min")]
    else:
        w = F.col(wcol).cast("long")
        # Integers add up exactly in any order (below 2**53), so the sum is the local runner's.
        aggs += [F.coalesce(F.sum(w), F.lit(0)).cast("double").alias(CELL_SUM),
                 F.sum(F.when(w.isNull(), 1).otherwise(0)).cast("long").alias(CELL_UNKNOWN),
                 F.min(w).alias("_min")]
    got = rows.groupBy(*by).agg(*aggs).toArrow()
    counts = got.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if str(t) in ("string", "large_string")
                           else None)
    dims = [c for c in by if c != out.contributor or c in {d for t in out.table_defs() for d in t.dimensions}]
    if len(counts) and (counts[dims].isna().any().any() or (counts["_min"].fillna(0) < 0).any()):
        return None
    unknown = int(counts[CELL_UNKNOWN].sum()) if len(counts) else 0
    if unknown and out.na_means == "refuse":
        return None
    if out.na_means == "zero":
        counts[CELL_UNKNOWN] = 0
    return counts.drop(columns=["_min"])
