"""The external sort and the streaming writers give the bytes of the in-memory sort and whole-table writers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.batches import to_frame
from release.io import bundle, stream
from release.io.extsort import ExternalSort
from release.report.view import _geojson_points

SCHEMA = pa.schema([("name", pa.string()), ("n", pa.int64()), ("t", pa.timestamp("ns")), ("lat", pa.float64()),
                    ("lon", pa.float64()), ("ok", pa.bool_())])


def _table(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = np.array(["b", "a", "=x", "Zoë", "a,b", 'q"', "", "日本"], dtype=object)
    name = names[rng.integers(0, len(names), n)]
    name[rng.random(n) < 0.1] = None
    t = np.datetime64("2024-01-01T00:00:00") + rng.integers(0, 5, n).astype("timedelta64[h]")
    lat = np.round(43.6 + rng.integers(0, 4, n) * 0.01, 7)
    lat[rng.random(n) < 0.2] = np.nan
    return pa.table({"name": pa.array(name, pa.string()), "n": pa.array(rng.integers(-3, 3, n)),
                     "t": pa.array(t.astype("datetime64[ns]")),
                     "lat": pa.array(lat, pa.float64(), from_pandas=True),
                     "lon": pa.array(np.round(-79.4 + rng.integers(0, 3, n) * 0.01, 7)),
                     "ok": pa.array(rng.random(n) < 0.5)}, schema=SCHEMA)


def _pandas_sorted(table: pa.Table, keys: list[str]) -> pd.DataFrame:
    """The records output's in-memory order (release.outputs.records)."""
    return to_frame(table).sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), memory=st.sampled_from([1, 500, 4000, 10**9]),
       batch=st.integers(1, 97), chunk=st.integers(1, 50))
def test_external_sort_of_many_spilled_runs_is_the_in_memory_order(tmp_path_factory: pytest.TempPathFactory,
                                                                   seed: int, n: int, memory: int, batch: int,
                                                                   chunk: int) -> None:
    table = _table(seed, n)
    keys = ["ok", "name", "n", "t", "lat", "lon"]
    folder = tmp_path_factory.mktemp("sort")
    s = ExternalSort(SCHEMA, keys, folder / "runs", memory_bytes=memory, chunk_rows=chunk)
    for b in table.to_batches(max_chunksize=batch):
        s.add(b)
    if memory == 1 and n > batch:
        assert s.runs > 1  # the budget forced spilled runs: the merge is what is tested
    got = list(s.merged(rows=37))
    assert all(t.num_rows <= 37 for t in got)
    merged = pa.concat_tables(got) if got else SCHEMA.empty_table()
    s.close()
    assert not (folder / "runs").exists()
    want = _pandas_sorted(table, keys)
    # Byte identity of what is published: the CSV of the merged stream and of the pandas sort.
    assert bundle.table_to_csv(to_frame(merged)) == bundle.table_to_csv(want)


def _frame(n: int) -> pd.DataFrame:
    return _pandas_sorted(_table(3, n), ["name", "n", "t", "lat", "lon", "ok"])


@pytest.mark.parametrize("n", [0, 1, 10, 2500])
def test_table_writer_in_chunks_writes_the_whole_table_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             n: int) -> None:
    # Small row groups and chunks: a streamed Parquet file spans several groups, CSV and GeoJSON many chunks.
    monkeypatch.setattr(bundle, "PARQUET_ROW_GROUP", 700)
    monkeypatch.setattr(stream, "PARQUET_ROW_GROUP", 700)
    monkeypatch.setattr(stream, "CSV_CHUNK_ROWS", 300)
    f = _frame(n)
    w = stream.TableWriter(tmp_path, "t", ("lat", "lon"))
    for start in range(0, max(n, 1), 256):
        w.add(f.iloc[start:start + 256])
    got = w.close()
    assert w.rows == n
    want = {"csv": bundle.table_to_csv(f), "parquet": bundle.table_to_parquet(f),
            "geojson": bundle.table_to_geojson(f, "lat", "lon")}
    for fmt, data in want.items():
        assert got[fmt].path.read_bytes() == data, fmt
        assert got[fmt].sha256 == hashlib.sha256(data).hexdigest()
        assert got[fmt].size == len(data)
    # The map's points kept while writing are those a reader parses from the file.
    arr = _geojson_points(want["geojson"])
    z, counts = np.unique(arr[:, 0] + 1j * arr[:, 1], return_counts=True)
    pts = got["geojson"].points
    assert pts is not None
    np.testing.assert_array_equal(pts[0], z.real)
    np.testing.assert_array_equal(pts[1], z.imag)
    np.testing.assert_array_equal(pts[2], counts)


def test_published_files_read_staged_files_only_when_asked(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"x\n1\n")
    files = stream.PublishedFiles()
    files["b.json"] = b"{}"
    files["a.csv"] = stream.StagedFile(p, hashlib.sha256(b"x\n1\n").hexdigest(), 4)
    assert list(files.sorted()) == ["a.csv", "b.json"]
    assert stream.file_size(files, "a.csv") == 4 and files["a.csv"] == b"x\n1\n"
    assert files.staged("a.csv") is not None and files.staged("b.json") is None
    assert stream.file_sha256(files, "b.json") == hashlib.sha256(b"{}").hexdigest()


def test_published_csv_read_from_a_file_in_blocks_equals_the_bytes_read(tmp_path: Path) -> None:
    import io

    f = _frame(3000)
    data = bundle.table_to_csv(f)
    p = tmp_path / "t.csv"
    p.write_bytes(data)
    batches = list(stream.read_csv_batches(p, block_bytes=4096))
    assert len(batches) > 1
    pd.testing.assert_frame_equal(bundle.read_published_csv(p, {}), bundle.read_published_csv(io.BytesIO(data), {}))


def test_parquet_bytes_do_not_depend_on_the_chunks_when_a_dictionary_overflows(tmp_path: Path) -> None:
    # 120,000 distinct 40-character ids: the column's dictionary passes the writer's 1 MB page limit
    # inside the first row group, where the fallback to plain pages falls by the chunks written.
    n = 120_000
    ids = pd.Series([f"{i:040d}" for i in range(n)], dtype="string")
    f = pd.DataFrame({"id": ids, "k": np.arange(n, dtype=np.int64)})
    got = {}
    for name, sizes in (("even", [4096]), ("ragged", [7919, 1, 65536, 333])):
        w = stream.TableWriter(tmp_path / name, "t", None)
        start, i = 0, 0
        while start < n:
            step = sizes[i % len(sizes)]
            w.add(f.iloc[start:start + step])
            start, i = start + step, i + 1
        got[name] = w.close()["parquet"].path.read_bytes()
    assert got["even"] == got["ragged"] == bundle.table_to_parquet(f)
