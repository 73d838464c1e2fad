"""Contribution bounding on Spark keeps exactly the rows release.dp.bounding keeps, however the rows are partitioned."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from release.dp.bounding import bound_contributions, bounding_key


def _frame(n: int, text_units: bool) -> pd.DataFrame:
    rng = np.random.default_rng(5)  # test data only
    # A few heavy units (far over any bound), many light ones, null units, identical rows.
    unit = np.where(rng.random(n) < 0.3, rng.integers(0, 4, n), rng.integers(4, n // 3, n))
    frame = pd.DataFrame({
        "unit": pd.array([f"p{u}" for u in unit] if text_units else unit, dtype="string" if text_units else "Int64"),
        "division": pd.array(rng.choice(["D11", "D12", "D13", "D99"], n), dtype="string"),
        "month": pd.array(rng.choice(["2024-01", "2024-02", "2024-03"], n), dtype="string"),
        "amount": pd.array(rng.integers(-5, 50, n), dtype="Int64"),
    })
    frame.loc[rng.random(n) < 0.05, "unit"] = pd.NA
    frame.loc[rng.random(n) < 0.03, "division"] = pd.NA
    return pd.concat([frame, frame.iloc[:40]], ignore_index=True)  # exact duplicates of 40 rows


@pytest.mark.parametrize("text_units, max_groups, statistic", [(True, 2, "count"), (False, None, "sum")])
def test_spark_bounding_and_counts_equal_local(spark: Any, text_units: bool, max_groups: int | None,
                                               statistic: str) -> None:
    from release.dp import keys as K
    from release.spark.dp import bounded_groups

    frame = _frame(1500, text_units)
    key = bytes(range(32))
    divisions, months = ["D11", "D12", "D13"], ["2024-01", "2024-02", "2024-03"]
    out = SimpleNamespace(by=("division", "month"), keys={"division": divisions, "month": months},
                          share={"max_records": 3, "max_groups": max_groups}, statistic=statistic,
                          column="amount" if statistic == "sum" else None,
                          bounds=(0, 20) if statistic == "sum" else None)
    ctx = SimpleNamespace(policy=SimpleNamespace(budget=SimpleNamespace(privacy_unit="unit"),
                                                 input=SimpleNamespace(record_id="id")),
                          schema={}, run_key=key)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    rows = spark.createDataFrame(table).repartition(3)
    groups, stats = bounded_groups(rows, out, ctx)

    codes = [K.column_codes(frame[c], ks) for c, ks in (("division", divisions), ("month", months))]
    eligible = (codes[0] >= 0) & (codes[1] >= 0)
    keep, want_stats = bound_contributions(frame, "unit", None, ["division", "month"], 3, max_groups,
                                           bounding_key(key), rows=eligible)
    kept = frame.loc[keep]
    assert stats == want_stats
    assert want_stats["units_over_bound"] > 0 and want_stats["rows_kept"] < want_stats["rows_in"]
    if statistic == "sum":
        kept = kept.assign(_v=np.clip(kept["amount"].astype(float).fillna(0).round(), 0, 20).astype(np.int64))
        want = kept.groupby(["division", "month"]).agg(_n=("unit", "size"), _sum=("_v", "sum"))
    else:
        want = kept.groupby(["division", "month"]).agg(_n=("unit", "size"))
    got = groups.set_index(["division", "month"]).sort_index()
    assert got.astype("int64").to_dict() == want.sort_index().astype("int64").to_dict()
