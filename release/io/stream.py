"""Published files written as their rows arrive: CSV, Parquet and GeoJSON streamed into the staging folder, hashed as written.

A run writes each published table straight into the bundle's staging folder
(`<out>/<dataset>/.staging-<release id>/`), chunk by chunk, with the same bytes the whole-table
writers in `release.io.bundle` produce (`tests/unit/io/test_stream.py`). Nothing holds a file's
bytes: the bundle code takes each file's sha256 and size from its `StagedFile`, and
`PublishedFiles` (a mapping of bundle path -> bytes) reads a staged file only when someone asks
for its bytes. The GeoJSON writer also keeps the distinct published points and their record
counts (parsed back from the coordinate text it wrote), which the report's map reads instead of
parsing the file again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from release.io.bundle import (
    CSV_CHUNK_ROWS,
    GEOJSON_HEAD,
    GEOJSON_TAIL,
    PARQUET_ROW_GROUP,
    csv_text,
    geojson_features,
    parquet_table,
)
from release.io.bundle import file_sha256 as file_hash


@dataclass
class StagedFile:
    """A published file already written in the staging folder: where, its sha256 and its size."""

    path: Path
    sha256: str
    size: int
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    "GeoJSON only: distinct (lon, lat) of the features as written, and the features at each."

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


class PublishedFiles(MutableMapping[str, bytes]):
    """Bundle path -> bytes, where a file may be staged on disk (read only when its bytes are asked for)."""

    def __init__(self, items: Iterable[tuple[str, bytes | StagedFile]] = ()) -> None:
        self._d: dict[str, bytes | StagedFile] = dict(items)

    def __getitem__(self, key: str) -> bytes:
        v = self._d[key]
        return v.read_bytes() if isinstance(v, StagedFile) else v

    def __setitem__(self, key: str, value: bytes | StagedFile) -> None:  # type: ignore[override]
        self._d[key] = value

    def __delitem__(self, key: str) -> None:
        del self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def raw(self, key: str) -> bytes | StagedFile:
        """The stored value: bytes, or the StagedFile (no read)."""
        return self._d[key]

    def staged(self, key: str) -> StagedFile | None:
        v = self._d.get(key)
        return v if isinstance(v, StagedFile) else None

    def size(self, key: str) -> int:
        v = self._d[key]
        return v.size if isinstance(v, StagedFile) else len(v)

    def sha256(self, key: str) -> str:
        v = self._d[key]
        return v.sha256 if isinstance(v, StagedFile) else hashlib.sha256(v).hexdigest()

    def sorted(self, keep: Callable[[str], bool] | None = None) -> PublishedFiles:
        """The same files in path order (optionally only those `keep` accepts), nothing read."""
        return PublishedFiles((k, self._d[k]) for k in sorted(self._d) if keep is None or keep(k))


def file_size(files: Mapping[str, bytes], key: str) -> int:
    """A published file's size without reading a staged one."""
    return files.size(key) if isinstance(files, PublishedFiles) else len(files[key])


def file_sha256(files: Mapping[str, bytes], key: str) -> str:
    return files.sha256(key) if isinstance(files, PublishedFiles) else hashlib.sha256(files[key]).hexdigest()


class _HashingFile:
    """A binary file that hashes what is written to it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def close(self) -> StagedFile:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return StagedFile(self.path, self._h.hexdigest(), self.size)


class TableWriter:
    """One published table's files (CSV, Parquet, GeoJSON when it has coordinates), fed frame chunks in order."""

    def __init__(self, folder: Path, stem: str, geo: tuple[str, str] | None) -> None:
        self.stem = stem
        self.geo = geo
        self._csv = _HashingFile(folder / f"{stem}.csv")
        self._pq_path = folder / f"{stem}.parquet"
        self._pq: pq.ParquetWriter | None = None
        self._pq_schema: pa.Schema | None = None
        self._pq_held: list[pa.Table] = []
        self._pq_rows = 0
        self._gj = _HashingFile(folder / f"{stem}.geojson") if geo else None
        self._features = 0
        self._points: list[tuple[np.ndarray, np.ndarray]] = []
        self._first = True
        self.rows = 0

    def add(self, chunk: pd.DataFrame) -> None:
        """The next rows of the table (already in published order)."""
        self._csv.write(csv_text(chunk, header=self._first))
        t = parquet_table(chunk)
        if self._pq_schema is None:
            self._pq_schema = t.schema
        elif t.schema != self._pq_schema:
            t = t.cast(self._pq_schema)
        self._pq_held.append(t)
        self._pq_rows += t.num_rows
        while self._pq_rows >= PARQUET_ROW_GROUP:
            self._write_group(PARQUET_ROW_GROUP)
        if self._gj is not None:
            self._geojson(chunk)
        self._first = False
        self.rows += len(chunk)

    def _write_group(self, n: int) -> None:
        assert self._pq_schema is not None
        whole = pa.concat_tables(self._pq_held)
        if self._pq is None:
            self._pq = pq.ParquetWriter(str(self._pq_path), self._pq_schema, compression="zstd")
        # One contiguous chunk per group: the writer pages (and falls back from a full dictionary) by
        # the chunks it is given, so chunks as they arrived would make the bytes depend on the batching.
        self._pq.write_table(whole.slice(0, n).combine_chunks(), row_group_size=PARQUET_ROW_GROUP)
        rest = whole.slice(n)
        self._pq_held = [rest] if rest.num_rows else []
        self._pq_rows = rest.num_rows

    def _geojson(self, chunk: pd.DataFrame) -> None:
        assert self._gj is not None and self.geo is not None
        lat, lon = self.geo
        if self._features == 0 and self._first:
            self._gj.write(GEOJSON_HEAD)
        rows = chunk.loc[chunk[lat].notna() & chunk[lon].notna()]
        for start in range(0, len(rows), CSV_CHUNK_ROWS):
            body, xs, ys = geojson_features(rows.iloc[start:start + CSV_CHUNK_ROWS], lat, lon)
            self._gj.write(b",\n" + body if self._features else body)
            self._features += len(xs)
            # The points as a reader of the file gets them: the coordinate text parsed back.
            x = pc.cast(xs, pa.float64()).to_numpy(zero_copy_only=False)
            y = pc.cast(ys, pa.float64()).to_numpy(zero_copy_only=False)
            z, counts = np.unique(x + 1j * y, return_counts=True)
            self._points.append((z, counts))

    def close(self) -> dict[str, StagedFile]:
        """Finish the files; {format: StagedFile}."""
        if self._first:
            raise ValueError("a table writer needs at least one chunk (the header comes from its columns)")
        if self._pq_rows or self._pq is None:
            self._write_group(self._pq_rows)
        assert self._pq is not None
        self._pq.close()
        out = {"csv": self._csv.close(),
               "parquet": StagedFile(self._pq_path, file_hash(self._pq_path), self._pq_path.stat().st_size)}
        with open(self._pq_path, "rb") as f:
            os.fsync(f.fileno())
        if self._gj is not None:
            self._gj.write(GEOJSON_TAIL)
            staged = self._gj.close()
            if self._points:
                z = np.concatenate([p[0] for p in self._points])
                c = np.concatenate([p[1] for p in self._points])
                u, inv = np.unique(z, return_inverse=True)
                counts = np.bincount(inv.ravel(), weights=c, minlength=len(u)).astype(np.int64)
                staged.points = (u.real.copy(), u.imag.copy(), counts)
            else:
                staged.points = (np.zeros(0), np.zeros(0), np.zeros(0))
            out["geojson"] = staged
        return out


def write_frame(folder: Path, stem: str, frame: pd.DataFrame, geo: tuple[str, str] | None) -> dict[str, StagedFile]:
    """A whole frame's files, written in chunks (the bytes of the whole-table writers)."""
    w = TableWriter(folder, stem, geo)
    n = len(frame)
    for start in range(0, max(n, 1), CSV_CHUNK_ROWS):
        w.add(frame.iloc[start:start + CSV_CHUNK_ROWS])
    return w.close()


def read_csv_batches(path: Path, block_bytes: int = 1 << 24) -> Iterator[pa.RecordBatch]:
    """A published CSV as record batches of text (empty cells null), never the whole file in memory."""
    import csv

    import pyarrow.csv as pacsv

    with open(path, "rb") as f:
        first = f.readline().decode("utf-8").rstrip("\n")
    names = next(csv.reader([first]), []) if first else []
    if not names:
        return
    reader = pacsv.open_csv(
        str(path), read_options=pacsv.ReadOptions(block_size=block_bytes),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[""],
                                             strings_can_be_null=True, quoted_strings_can_be_null=True))
    yield from reader
