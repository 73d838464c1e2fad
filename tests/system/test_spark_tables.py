"""`table` outputs on Spark: the cell counts as one group-by, and no record row reaches the driver."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from release.policy.base import ColumnSpec, ColumnType, Role
from release.tables.output import CELL_ROWS, CELL_SUM, CELL_UNKNOWN, TableOutput
from tests.conftest import POLICIES


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)  # test data only
    f = pd.DataFrame({
        "a": pd.array(rng.choice(["x", "y", "z"], n), dtype="string"),
        "b": pd.array(rng.choice(["p", "q", "r", "s"], n, p=[0.6, 0.3, 0.08, 0.02]), dtype="string"),
        "n": pd.array(rng.integers(0, 6, n), dtype="Int64"),
    })
    f.loc[rng.random(n) < 0.02, "n"] = pd.NA
    return f


def _ctx(out: TableOutput) -> Any:
    schema = {"a": ColumnSpec(type=ColumnType.category, role=Role.other, categories=["z", "y", "x", "w"]),
              "b": ColumnSpec(type=ColumnType.string, role=Role.other),
              "n": ColumnSpec(type=ColumnType.integer, role=Role.other)}
    return SimpleNamespace(schema=schema, policy=SimpleNamespace(outputs=[out], gate=SimpleNamespace(
        min_audit_interval=None)), release_id="r", options={}, internal={})


def _out(**kw: Any) -> TableOutput:
    return TableOutput(name="t", dimensions=("a", "b"), count_column="n", na_means="suppressed-at-source",
                       primary={"threshold": 4}, **kw)


def _published(build: Any) -> dict[str, bytes]:
    from release.io.bundle import table_to_csv

    return {k: table_to_csv(v) for k, v in build.tables.items()}


def test_counts_in_any_order_build_the_tables_the_rows_build() -> None:
    """build(rows) and build_from_counts(cell counts, shuffled) publish the same bytes, with a declared empty
    category ('w') and cells suppressed at source; the counts are far fewer rows than the records."""
    frame = _frame(3000)
    out = _out()
    counts = out.cell_counts(frame)
    assert len(counts) <= 12 and int(counts[CELL_ROWS].sum()) == len(frame)
    assert int(counts[CELL_UNKNOWN].sum()) == int(frame["n"].isna().sum())
    shuffled = counts.sample(frac=1.0, random_state=1)
    want, got = out.build(frame, _ctx(out)), out.build_from_counts(shuffled, _ctx(out))
    assert _published(want) == _published(got)
    table = next(iter(want.tables.values()))
    assert "w" in set(table["a"]) and (table["flag"] == "suppressed").any()


def test_spark_cell_counts_equal_the_local_ones(spark: Any) -> None:
    from release.spark.tables import cell_counts

    frame = _frame(2000)
    out = _out()
    rows = spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False)).repartition(3)
    got = cell_counts(rows, out, _ctx(out).schema)
    assert got is not None
    key = ["a", "b"]
    want = out.cell_counts(frame).sort_values(key).reset_index(drop=True)
    got = got.sort_values(key).reset_index(drop=True)
    for c in (*key, CELL_ROWS, CELL_UNKNOWN):
        assert got[c].astype(str).tolist() == want[c].astype(str).tolist(), c
    assert np.array_equal(got[CELL_SUM].to_numpy(float), want[CELL_SUM].to_numpy(float))
    assert _published(out.build_from_counts(got, _ctx(out))) == _published(out.build(frame, _ctx(out)))
    # Rows at fault go to the driver's build, which names them (None: not aggregated on Spark).
    bad = frame.copy()
    bad.loc[5, "a"] = pd.NA
    assert cell_counts(spark.createDataFrame(pa.Table.from_pandas(bad, preserve_index=False)), out,
                       _ctx(out).schema) is None
    refuse = _out().model_copy(update={"na_means": "refuse"})
    assert cell_counts(rows, refuse, _ctx(out).schema) is None


def test_table_output_collects_no_record_rows(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """use-of-force-by-gender (one `table` output, row-local steps only): Spark sends the driver the cell
    counts, never the rows, and the published tables are the local runner's, byte for byte."""
    import pyarrow.parquet as pq

    import release.spark.stages as stages
    from release.demo import demo_inputs
    from release.engine import run_release
    from release.spark.runner import run_release_spark

    setup = demo_inputs(tmp_path / "in", 3000, lambda _m: None)
    pol = POLICIES / "use-of-force-by-gender.yaml"
    from release.policy.loader import load_policy

    declared = set(load_policy(pol).input.columns)
    src = next(Path(p) for p in setup["inputs"].values() if set(pq.read_schema(p).names) == declared)
    opts = dict(setup["options"])
    collected: list[int] = []
    real = stages.collect_batches

    def counting(df: Any) -> list[pa.RecordBatch]:
        got = real(df)
        collected.append(sum(b.num_rows for b in got))
        return got

    monkeypatch.setattr(stages, "collect_batches", counting)
    lines: list[str] = []
    s = run_release_spark(pol, src, tmp_path / "spark", options={**opts, "ledger": str(tmp_path / "l1.sqlite")},
                          seed=4, progress=lines.append).bundle
    local = run_release(pol, src, tmp_path / "local", options={**opts, "ledger": str(tmp_path / "l2.sqlite")},
                        seed=4).bundle
    assert collected == [], "record rows were collected to the driver"
    assert any("cell counts on Spark" in x for x in lines)
    files = sorted(f.name for f in local.iterdir() if f.suffix in (".csv", ".parquet"))
    assert files and all((local / f).read_bytes() == (s / f).read_bytes() for f in files)


def test_local_runner_accumulates_table_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local runner feeds its batches to the outputs' TableCounts (no frame of the rows is built) and
    publishes what the whole-frame build publishes."""
    import pyarrow.parquet as pq

    import release.engine as engine
    from release.demo import demo_inputs
    from release.policy.loader import load_policy

    setup = demo_inputs(tmp_path / "in", 3000, lambda _m: None)
    pol = POLICIES / "use-of-force-by-gender.yaml"
    declared = set(load_policy(pol).input.columns)
    src = next(Path(p) for p in setup["inputs"].values() if set(pq.read_schema(p).names) == declared)
    opts = {**setup["options"], "batch_rows": 100}
    sinks: list[Any] = []
    real = engine.aggregate_sink

    def spy(*a: Any) -> Any:
        sinks.append(real(*a))
        return sinks[-1]

    monkeypatch.setattr(engine, "aggregate_sink", spy)
    acc = engine.run_release(pol, src, tmp_path / "acc", options={**opts, "ledger": str(tmp_path / "a.sqlite")},
                             seed=2).bundle
    monkeypatch.setattr(engine, "aggregate_sink", lambda *a: None)
    whole = engine.run_release(pol, src, tmp_path / "whole", options={**opts, "ledger": str(tmp_path / "b.sqlite")},
                               seed=2).bundle
    assert sinks and sinks[0] is not None
    files = sorted(f.name for f in whole.iterdir() if f.suffix in (".csv", ".parquet"))
    assert files and all((whole / f).read_bytes() == (acc / f).read_bytes() for f in files)
