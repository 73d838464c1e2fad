"""Contribution bounding on Spark keeps exactly the rows release.dp.bounding keeps, however the rows are partitioned."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        # Every other declared type enters the row score: floats (NaN, -0.0), booleans, timestamps, text.
        "weight": rng.choice([0.0, -0.0, 1.5, np.nan, 2.25e300], n),
        "flag": pd.array(rng.choice([True, False], n), dtype="boolean"),
        "at": pd.Series(pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")),
        "note": pd.array(rng.choice(["", "é" * 20, "long text " * 5, "ok"], n), dtype="string"),
    })
    frame.loc[rng.random(n) < 0.05, "unit"] = pd.NA
    frame.loc[rng.random(n) < 0.03, "division"] = pd.NA
    frame.loc[rng.random(n) < 0.1, "flag"] = pd.NA
    frame.loc[rng.random(n) < 0.1, "at"] = pd.NaT
    frame.loc[rng.random(n) < 0.1, "note"] = pd.NA
    return pd.concat([frame, frame.iloc[:40]], ignore_index=True)  # exact duplicates of 40 rows


def _check(spark: Any, frame: pd.DataFrame, max_groups: int | None, statistic: str) -> None:
    """bounded_groups on Spark against bound_contributions on the same rows: kept counts (and sums) per
    cell, and every bounding figure."""
    from release.dp import keys as K
    from release.spark.dp import bounded_groups

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


@pytest.mark.parametrize("text_units, max_groups, statistic",
                         [(True, 2, "count"), (False, None, "sum"), (False, 1, "sum"), (True, None, "count")])
def test_spark_bounding_and_counts_equal_local(spark: Any, monkeypatch: pytest.MonkeyPatch, text_units: bool,
                                               max_groups: int | None, statistic: str) -> None:
    from release.spark import dp as spark_dp

    def no_python(*a: Any, **k: Any) -> Any:
        raise AssertionError("the native path ran Python workers")

    # Every column is of a declared type: the scores, ranks and counts are Spark's alone.
    monkeypatch.setattr(spark_dp, "_bounded_in_python", no_python)
    monkeypatch.setattr(spark_dp, "BoundPartition", no_python)
    _check(spark, _frame(1500, text_units), max_groups, statistic)


@pytest.mark.parametrize("max_groups", [2, None])
def test_spark_bounding_falls_back_to_python_for_other_types(spark: Any, monkeypatch: pytest.MonkeyPatch,
                                                             max_groups: int | None) -> None:
    # A date column (no declared pipeline type): no Spark expression equals the local score of it, so the rows
    # of units over the bound go through the local runner's own function in Python workers; the kept rows are
    # still the same.
    from release.spark import dp as spark_dp

    calls = []
    fallback = spark_dp._bounded_in_python

    def recording(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return fallback(*a, **k)

    monkeypatch.setattr(spark_dp, "_bounded_in_python", recording)
    frame = _frame(900, True)
    frame["day"] = [date(2024, 1, 1 + i % 28) for i in range(len(frame))]
    _check(spark, frame, max_groups, "count")
    assert calls


_texts = st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["", "é" * 33, "x" * 64, "αβγδ" * 25]))
_rows = st.lists(st.tuples(
    _texts,
    st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
    st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, float("nan")])),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.integers(-2**50, 2**50)),
    _texts,
), min_size=1, max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_rows, st.binary(min_size=16, max_size=16))
def test_numpy_xxh64_chain_equals_sparks_xxhash64(spark: Any, rows: list[tuple[Any, ...]], key: bytes) -> None:
    # Every supported type, nulls, unicode, -0.0, NaN, empty and long (several 32-byte stripes) strings.
    from pyspark.sql import functions as F

    from release.batches import to_frame
    from release.dp.rowhash import row_score, spark_kind, spark_row_score, xxh64_chain

    cols = list(zip(*rows, strict=True))
    table = pa.table({
        "s": pa.array(cols[0], pa.string()), "i": pa.array(cols[1], pa.int64()), "j": pa.array(cols[2], pa.int32()),
        "d": pa.array(cols[3], pa.float64()), "b": pa.array(cols[4], pa.bool_()),
        "t": pa.array(cols[5], pa.int64()).cast(pa.timestamp("us")), "u": pa.array(cols[6], pa.string()),
    })
    df = spark.createDataFrame(table)
    names = table.column_names
    kinds = [(c, spark_kind(df.schema[c].dataType)) for c in names]
    exprs = [F.xxhash64(*names).alias("all"), *[F.xxhash64(c).alias(f"h_{c}") for c in names],
             spark_row_score(sorted(kinds), key).alias("score"),
             spark_row_score(kinds[::-1], key).alias("score_rev")]
    got = df.select(*exprs).toArrow()
    # Spark's own chain, column by column and over every column at once.
    for c in names:
        assert got.column(f"h_{c}").to_pylist() == xxh64_chain([table.column(c)]).tolist(), c
    assert got.column("all").to_pylist() == xxh64_chain([table.column(c) for c in names]).tolist()
    # The keyed bounding score: from Arrow and from the pipeline's frame alike, in any given order.
    assert got.column("score").to_pylist() == row_score(table, key).tolist() == row_score(to_frame(table), key).tolist()
    assert got.column("score_rev").to_pylist() == row_score(table, key, names[::-1]).tolist()
