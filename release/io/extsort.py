"""External sort of record batches: sorted runs within a memory budget, spilled to Arrow IPC, merged in order.

The records output publishes its rows in canonical order (the declared keys, then every other
published column, ascending, nulls last), the order pandas' `sort_values(kind="mergesort",
na_position="last")` gives on the same frame. Text sorts by code point in both (UTF-8 bytes in
Arrow), so the merged stream is the same sequence of rows; rows that tie on every key are equal in
every published column, so which of them comes first changes no byte.

Batches are collected until their Arrow size passes the budget, sorted with `pc.sort_indices`
(stable) and written as one run of `chunk_rows`-row batches to an IPC file in the run's private
staging folder. `merged()` then streams the runs back chunk by chunk and merges them without a
Python loop over rows: it sorts what the runs have buffered and emits every row up to the
smallest "last buffered row" among the runs (no unread row can sort before it), keeping the rest
for the next round. A single run (everything fitted) is emitted straight from memory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_SORT_MEMORY_MB = 1024
"Arrow bytes of records sorted in memory before a run is spilled ($RELEASE_SORT_MEMORY_MB)."


def sort_memory_bytes() -> int:
    """The sort's in-memory budget: $RELEASE_SORT_MEMORY_MB (megabytes), else the default."""
    from release.errors import UsageError

    got = os.environ.get("RELEASE_SORT_MEMORY_MB")
    try:
        mb = float(got) if got else DEFAULT_SORT_MEMORY_MB
    except ValueError:
        raise UsageError(f"RELEASE_SORT_MEMORY_MB must be a number of megabytes, not {got!r}") from None
    if mb <= 0:
        raise UsageError("RELEASE_SORT_MEMORY_MB must be positive")
    return int(mb * (1 << 20))


def _sort_indices(table: pa.Table, keys: list[tuple[str, str, str]]) -> pa.Array:
    """Stable sort indices, nulls last (per-key null placement where pyarrow has it)."""
    try:
        return pc.sort_indices(table, sort_keys=keys)
    except (TypeError, ValueError, pa.ArrowInvalid):  # pyarrow before per-key null placement
        return pc.sort_indices(table, sort_keys=[k[:2] for k in keys], null_placement="at_end")


class ExternalSort:
    """Sort batches of one schema by `keys` (ascending, nulls last), spilling sorted runs to `folder`."""

    def __init__(self, schema: pa.Schema, keys: list[str], folder: Path, memory_bytes: int | None = None,
                 chunk_rows: int = 1 << 16) -> None:
        self.schema = schema
        self.keys = [(k, "ascending", "at_end") for k in keys]
        self.folder = folder
        self.memory = sort_memory_bytes() if memory_bytes is None else max(1, int(memory_bytes))
        self.chunk_rows = max(1, int(chunk_rows))
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._runs: list[Path] = []
        self.rows = 0

    @property
    def runs(self) -> int:
        """Runs spilled to disk so far (0 while everything fits the budget)."""
        return len(self._runs)

    def _sorted(self, table: pa.Table) -> pa.Table:
        if table.num_rows <= 1:
            return table
        return table.take(_sort_indices(table, self.keys))

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = batch.select(self.schema.names).cast(self.schema)
        for b in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
            self._pending.append(b)
            self._pending_bytes += b.nbytes
            self.rows += b.num_rows
        if self._pending_bytes >= self.memory:
            self._spill()

    def _spill(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_bytes = [], 0
        idx = _sort_indices(table, self.keys)
        # Column by column, each unsorted column let go once taken: the run and one column, never two runs.
        cols = []
        for _ in self.schema.names:
            cols.append(table.column(0).take(idx))
            table = table.remove_column(0)
        table = pa.Table.from_arrays(cols, schema=self.schema)
        del cols, idx
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"run-{len(self._runs):05d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as w:
            for start in range(0, table.num_rows, self.chunk_rows):
                w.write_batch(table.slice(start, self.chunk_rows).combine_chunks().to_batches()[0])
        del table
        self._runs.append(path)

    def merged(self, rows: int = 1 << 18) -> Iterator[pa.Table]:
        """Every row added, in order, as tables of at most `rows` rows (the last may be shorter)."""
        if not self._runs:
            table = self._sorted(pa.Table.from_batches(self._pending, schema=self.schema))
            self._pending, self._pending_bytes = [], 0
            for start in range(0, table.num_rows, rows):
                yield table.slice(start, rows)
            return
        self._spill()
        out: list[pa.Table] = []
        n_out = 0
        for t in self._merge_runs():
            out.append(t)
            n_out += t.num_rows
            while n_out >= rows:
                whole = pa.concat_tables(out)
                yield whole.slice(0, rows)
                rest = whole.slice(rows)
                out, n_out = ([rest] if rest.num_rows else []), rest.num_rows
        if n_out:
            yield pa.concat_tables(out)

    def _merge_runs(self) -> Iterator[pa.Table]:
        files = [pa.OSFile(str(p), "rb") for p in self._runs]
        try:
            yield from self._merge(files)
        finally:
            for f in files:
                f.close()

    def _merge(self, files: list[pa.NativeFile]) -> Iterator[pa.Table]:
        readers = [pa.ipc.open_file(f) for f in files]
        nxt = [0] * len(readers)
        # Per run: its rows read but not yet emitted (sorted, since each run is).
        held: list[pa.Table | None] = [None] * len(readers)

        def refill(i: int) -> None:
            while held[i] is None and nxt[i] < readers[i].num_record_batches:
                b = readers[i].get_batch(nxt[i])
                nxt[i] += 1
                if b.num_rows:
                    held[i] = pa.Table.from_batches([b], schema=self.schema)

        for i in range(len(readers)):
            refill(i)
        while True:
            live = [i for i in range(len(readers)) if held[i] is not None and held[i].num_rows]  # type: ignore[union-attr]
            if not live:
                break
            if len(live) == 1 and nxt[live[0]] >= readers[live[0]].num_record_batches:
                yield held[live[0]]  # type: ignore[misc]
                held[live[0]] = None
                continue
            parts = [held[i] for i in live]
            sizes = np.array([p.num_rows for p in parts])  # type: ignore[union-attr]
            table = pa.concat_tables(parts)  # type: ignore[arg-type]
            order = _sort_indices(table, self.keys).to_numpy()
            pos = np.empty(len(order), dtype=np.int64)
            pos[order] = np.arange(len(order))
            ends = np.cumsum(sizes) - 1
            # Runs with more to read bound what is safe: nothing unread sorts before their last held row.
            bounded = [j for j, i in enumerate(live) if nxt[i] < readers[i].num_record_batches]
            cut = int(pos[ends[bounded]].min()) + 1 if bounded else len(order)
            yield table.take(pa.array(order[:cut]))
            taken = np.zeros(len(order), dtype=bool)
            taken[order[:cut]] = True
            starts = ends - sizes + 1
            for j, i in enumerate(live):
                # Each run's emitted rows are a prefix of it (a sorted run's rows emitted in order).
                k = int(taken[starts[j]:ends[j] + 1].sum())
                rest = parts[j].slice(k)  # type: ignore[union-attr]
                held[i] = rest if rest.num_rows else None
                refill(i)
            del table, order, pos, taken

    def close(self) -> None:
        """Remove the spilled runs (the folder too)."""
        self._pending = []
        shutil.rmtree(self.folder, ignore_errors=True)
        self._runs = []
