"""A `table` output's cell counts accumulated batch by batch (TableCounts) equal those of the whole frame,
errors included, and build the same published tables."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.errors import InputError
from release.policy.base import ColumnSpec, ColumnType, Role
from release.tables.output import TableCounts, TableOutput


def _out(na_means: str = "suppressed-at-source") -> TableOutput:
    return TableOutput(name="t", tables=[{"name": "ab", "dimensions": ["a", "b"]}, {"name": "ac", "dimensions": ["a", "c"]}],
                       count_column="n", na_means=na_means, primary={"threshold": 3})


def _ctx(out: TableOutput) -> Any:
    schema = {"a": ColumnSpec(type=ColumnType.category, role=Role.other, categories=["y", "x", "w"]),
              "b": ColumnSpec(type=ColumnType.string, role=Role.other),
              "c": ColumnSpec(type=ColumnType.string, role=Role.other),
              "n": ColumnSpec(type=ColumnType.integer, role=Role.other)}
    return SimpleNamespace(schema=schema, policy=SimpleNamespace(outputs=[out], gate=SimpleNamespace(
        min_audit_interval=None)), release_id="r", options={}, internal={})


def _frame(seed: int, n: int, faults: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)  # test data only
    f = pd.DataFrame({"a": pd.array(rng.choice(["x", "y"], n), dtype="string"),
                      "b": pd.array(rng.choice(["p", "q", "r"], n, p=[0.7, 0.25, 0.05]), dtype="string"),
                      "c": pd.array(rng.choice(["u", "v"], n), dtype="string"),
                      "n": pd.array(rng.integers(0, 4, n), dtype="Int64")})
    f.loc[rng.random(n) < 0.03, "n"] = pd.NA
    if faults:
        f.loc[rng.random(n) < 0.02, "b"] = pd.NA
    return f


def _accumulated(out: TableOutput, frame: pd.DataFrame, cuts: list[int]) -> pd.DataFrame:
    acc = TableCounts(out)
    state = acc.create()
    for lo, hi in zip([0, *cuts], [*cuts, len(frame)], strict=True):
        state = acc.add(state, frame.iloc[lo:hi].reset_index(drop=True))
    return acc.finish(state)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(1, 400), cuts=st.lists(st.integers(0, 400), max_size=6),
       faults=st.booleans())
def test_batches_give_the_whole_frame_counts(seed: int, n: int, cuts: list[int], faults: bool) -> None:
    from release.io.bundle import table_to_csv

    out = _out()
    frame = _frame(seed, n, faults)
    cuts = sorted({min(c, n) for c in cuts})
    try:
        want = out.build(frame, _ctx(out))
    except InputError as e:
        with pytest.raises(InputError) as got:
            out.build_from_counts(_accumulated(out, frame, cuts), _ctx(out))
        assert str(got.value) == str(e)  # the same rows named
        return
    got_b = out.build_from_counts(_accumulated(out, frame, cuts), _ctx(out))
    assert {k: table_to_csv(v) for k, v in want.tables.items()} == {k: table_to_csv(v) for k, v in got_b.tables.items()}


def test_refused_missing_counts_name_rows_across_batches() -> None:
    out = _out("refuse")
    frame = _frame(1, 300, False)
    with pytest.raises(InputError) as whole:
        out.cell_counts(frame)
    with pytest.raises(InputError) as parts:
        _accumulated(out, frame, [50, 51, 200])
    assert str(parts.value) == str(whole.value) and "rows [" in str(whole.value)
