"""On Spark, a records-only policy streams its rows to the driver a partition at a time into the local
runner's external sort: nothing collects every row at once, and the files equal the local runner's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import POLICIES
from tests.system.test_batch_invariance import _deterministic
from tests.system.test_records_stream import count_sort_runs
from tests.system.test_spark_equivalence import _inputs, _kind


@settings(max_examples=60, deadline=None)
@given(value=st.binary(max_size=600), size=st.integers(1, 64), cut=st.integers(1, 8))
def test_framed_pieces_join_into_the_value_and_a_cut_is_a_bug(value: bytes, size: int, cut: int) -> None:
    from release.errors import InternalError
    from release.spark.rows import _unframe

    framed = len(value).to_bytes(8, "little") + value
    pieces = [framed[i:i + size] for i in range(0, len(framed), size)]
    assert _unframe(b"".join(pieces)) == value
    with pytest.raises(InternalError):
        _unframe(b"".join(pieces)[:-cut])


def test_stream_batches_hands_over_every_row_in_slices(spark: Any) -> None:
    from release.spark.stages import stream_batches

    df = spark.range(0, 1000, numPartitions=3).selectExpr("id", "cast(id % 7 as string) as s")
    got = list(stream_batches(df, rows_per_blob=64))
    assert len(got) >= 1000 // 64, "rows did not travel in slices"
    assert all(b.num_rows <= 64 for b in got)
    t = pa.Table.from_batches(got)
    assert sorted(t.column("id").to_pylist()) == list(range(1000))
    assert t.column("s").to_pylist()[:1] and set(t.column("s").to_pylist()) == {str(i) for i in range(7)}


def test_records_policy_on_spark_streams_into_the_external_sort(spark: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from release.engine import run_release
    from release.spark import stages
    from release.spark.runner import run_release_spark

    inputs, options = _inputs(tmp_path / "in")
    pol = POLICIES / "crime-indicators.yaml"
    kind = _kind(pol, inputs)
    assert kind is not None

    def collect_at_once(_df: Any) -> Any:
        raise AssertionError("every row was collected to the driver at once")

    monkeypatch.setattr(stages, "collect_batches", collect_at_once)
    from release.spark import rows as spark_rows

    # The partitions' pipeline results travel in pieces of a few KB: many pieces per partition, reassembled.
    monkeypatch.setattr(spark_rows, "RESULT_PIECE_BYTES", 4096)
    sizes: list[int] = []
    unframe = spark_rows._unframe

    def counting(data: bytes) -> bytes:
        sizes.append(len(data))
        return unframe(data)

    monkeypatch.setattr(spark_rows, "_unframe", counting)
    runs = count_sort_runs(monkeypatch)
    now = datetime.now(UTC).replace(microsecond=0)
    got = {}
    for name, fn in (("local", run_release), ("spark", run_release_spark)):
        if name == "spark":
            runs.clear()
            monkeypatch.setenv("RELEASE_SORT_MEMORY_MB", "0.01")  # every batch spills a run on the driver
        opts = {**options, "ledger": str(tmp_path / f"{name}.sqlite")}
        res = fn(pol, inputs[kind], tmp_path / name, options=opts, seed=5, now=now)
        assert res.bundle is not None
        assert not list(res.bundle.parent.glob(".staging-*")), "the staging folder is left behind"
        got[name] = _deterministic(res.bundle)
    assert runs, "the Spark run did not go through the external sort: the streamed path was not taken"
    assert sizes and max(sizes) > 4 * 4096, f"no partition result was reassembled from several pieces: {sizes}"
    local, sp = got["local"], got["spark"]
    assert local["files"] and local["files"].keys() == sp["files"].keys()
    for f in local["files"]:
        assert local["files"][f] == sp["files"][f], f"{f} differs between the Spark and the local runner"
    assert local["outputs"] == sp["outputs"]
