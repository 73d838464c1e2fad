"""Tumult Analytics' DP count per key on local[2], run inside .venv-tumult (pyspark 3.5) by bench_spark.py.

Usage: .venv-tumult/bin/python benchmarks/tumult_count.py DATA.parquet UNIT BY1,BY2 MAX_ROWS EPSILON
Prints one JSON line: seconds of Tumult's query (the same bounded count the engine publishes: at most
MAX_ROWS rows per unit, Laplace counts over the public key grid) and of Spark's exact group-by on the
same session and data, so the two are compared within one process.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    path, unit, by, max_rows, eps = argv[0], argv[1], argv[2].split(","), int(argv[3]), float(argv[4])
    import os

    from pyspark.sql import SparkSession

    # Tumult's Python UDFs run in workers that must import tmlt: this environment's interpreter.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    import tempfile

    # Tumult writes temporary tables to the warehouse: a private folder, never the working tree.
    warehouse = tempfile.mkdtemp(prefix="tumult-warehouse-")
    spark = (SparkSession.builder.master("local[2]").config("spark.sql.warehouse.dir", warehouse).config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "8").config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    from tmlt.analytics import (
        AddRowsWithID,
        KeySet,
        MaxRowsPerID,
        PureDPBudget,
        QueryBuilder,
        Session,
    )

    df = spark.read.parquet(path).select(unit, *by).cache()
    n = df.count()
    keys = {c: sorted(r[0] for r in df.select(c).distinct().collect()) for c in by}
    t0 = time.perf_counter()
    exact = df.groupBy(*by).count().collect()
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    session = Session.from_dataframe(privacy_budget=PureDPBudget(eps), source_id="records", dataframe=df,
                                     protected_change=AddRowsWithID(id_column=unit))
    query = QueryBuilder("records").enforce(MaxRowsPerID(max_rows)).groupby(KeySet.from_dict(keys)).count()
    got = session.evaluate(query, PureDPBudget(eps)).collect()
    t_tumult = time.perf_counter() - t0
    print(json.dumps({"rows": n, "cells": len(got), "exact_cells": len(exact), "tumult_s": round(t_tumult, 3),
                      "spark_exact_groupby_s": round(t_exact, 3), "pyspark": spark.version}))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
