"""Batches and accumulators: the row pipeline of one run over Arrow record batches, and aggregates that merge.

This module is the contract between the local engine and any other runner (the Spark runner
calls the same objects through `mapInArrow`). Its shape:

* ``row_pipeline(plan, context) -> RowPipeline``: the compiled, picklable row function of one
  policy run. ``RowPipeline.output_schema(input_schema) -> pa.Schema`` declares what it
  returns; ``RowPipeline(batch) -> pa.RecordBatch`` applies it to one batch;
  ``RowPipeline.process(batch) -> (pa.RecordBatch, BatchResult)`` also returns the batch's
  mergeable side result (validation failures as counts and row numbers, never values; the
  steps' evidence parts). A batch may carry the column ``_row`` (int64, the 1-based input row
  number) so that validation names input rows; without it rows are numbered within the batch
  from ``RowPipeline.row_offset``. The pipeline validates and converts the raw text columns to
  their declared types, then runs the longest prefix of the policy's steps that are row-local
  (``StepConfig.row_local``: drop, filter, generalize, pseudonymize, geomask snap / area /
  withhold / donut). Row i of its output depends only on row i of its input, the bound policy
  and configuration, and keyed secrets: no Python ``hash()``, no process state, no randomness
  read in sequence. The remaining steps (k-anonymity, whose node is a global decision) run on
  the driver after the pipeline.
* ``Accumulator``: ``create() -> state``, ``add(state, batch) -> state``, ``merge(a, b) ->
  state``, ``finish(state) -> result``, states small and picklable. ``GroupCounts`` (the DP
  key grid and `table` output counts), ``FrequencyTable`` (quasi-identifier combinations with
  sensitive-value counts: what the k-anonymity search runs on), ``DuplicateIds`` (the record-id
  uniqueness rule), ``BatchResult`` (validation and evidence, merged with ``merge``).
* Keyed per-row randomness: ``run_key(seed)`` is the run's secret (fixed in test mode, fresh
  from the OS otherwise); ``keyed_u64`` is SipHash-2-4 of 64-bit words under a 128-bit key,
  vectorized; ``row_scores`` is a keyed 64-bit score of a row's values (value-based, the same in
  every batch split): Spark's xxhash64 chain behind a key-derived prefix (release/dp/rowhash.py),
  so the Spark runner computes it in the JVM. DP contribution bounding (release/dp/bounding.py)
  ranks rows by these scores.
* Evidence of a row-local step is computed per batch and merged by ``merge_evidence``: equal
  values are kept, counts summed, and figures that need the whole column (quantiles, distinct
  counts, points shared by units) are carried as a ``Deferred`` state that merges and is
  finished once, so one batch and many batches give the same figures.

See docs/batches.md for how the local engine uses it (batch size, sort, writers).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from release.context import StepContext, test_mode
from release.errors import InternalError

if TYPE_CHECKING:
    from release.plan import Plan
    from release.policy.base import Schema
    from release.policy.models import Policy
    from release.validate import ValidationReport

ROW = "_row"
"Optional int64 column of a raw batch: the 1-based input row number validation reports."
DEFAULT_BATCH_ROWS = 262_144
"Rows per batch when the engine is not told otherwise (a few tens of MB of text per batch)."
ROW_DIGEST = "_row_digest"
"""uint64 column of a pruned frame (release.engine.PrunedFrame): the bits of the row's contribution-bounding
score over every column (release.dp.bounding.BoundingKey.row_scores), computed per batch before the
columns no output reads were let go. Never published."""

S = TypeVar("S")
R = TypeVar("R")


# ------------------------------------------------------------------------------------------ keyed scores

def run_key(seed: int | None = None) -> bytes:
    """The run's 32-byte secret for keyed per-row functions: fixed in test mode, fresh per run otherwise."""
    if test_mode():
        return hashlib.sha256(f"release-test-run-key:{seed}".encode()).digest()
    if seed is not None:
        raise InternalError("a seed reached the run key outside test mode (this is a bug)")
    return secrets.token_bytes(32)


def subkey(key: bytes, label: str) -> bytes:
    """A 16-byte key for one use (label) of the run key: HMAC-SHA256, truncated."""
    return hmac.new(key, b"release-subkey\0" + label.encode(), hashlib.sha256).digest()[:16]


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _rotl(x: np.ndarray, b: int) -> np.ndarray:
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


def keyed_u64(words: np.ndarray, key: bytes) -> np.ndarray:
    """SipHash-2-4 of each 64-bit word (as 8 little-endian bytes) under a 16-byte key: a keyed PRF, vectorized."""
    if len(key) != 16:
        raise InternalError("keyed_u64 needs a 16-byte key (this is a bug)")
    m = np.ascontiguousarray(words).astype(np.uint64, copy=False)
    k0 = np.uint64(int.from_bytes(key[:8], "little"))
    k1 = np.uint64(int.from_bytes(key[8:], "little"))
    with np.errstate(over="ignore"):
        v0 = np.full(m.shape, k0 ^ np.uint64(0x736F6D6570736575), dtype=np.uint64)
        v1 = np.full(m.shape, k1 ^ np.uint64(0x646F72616E646F6D), dtype=np.uint64)
        v2 = np.full(m.shape, k0 ^ np.uint64(0x6C7967656E657261), dtype=np.uint64)
        v3 = k1 ^ np.uint64(0x7465646279746573) ^ m

        def rounds(n: int) -> None:
            nonlocal v0, v1, v2, v3
            for _ in range(n):
                v0 = v0 + v1
                v1 = _rotl(v1, 13) ^ v0
                v0 = _rotl(v0, 32)
                v2 = v2 + v3
                v3 = _rotl(v3, 16) ^ v2
                v0 = v0 + v3
                v3 = _rotl(v3, 21) ^ v0
                v2 = v2 + v1
                v1 = _rotl(v1, 17) ^ v2
                v2 = _rotl(v2, 32)

        rounds(2)
        v0 = v0 ^ m
        b = np.uint64(8 << 56)  # the length byte of an 8-byte message, no tail bytes
        v3 = v3 ^ b
        rounds(2)
        v0 = v0 ^ b
        v2 = v2 ^ np.uint64(0xFF)
        rounds(4)
        return (v0 ^ v1 ^ v2 ^ v3) & _M64


def row_scores(frame: pd.DataFrame | pa.Table, key: bytes, label: str, columns: list[str] | None = None) -> np.ndarray:
    """Keyed 64-bit score per row (signed int64): release.dp.rowhash.row_score under ``subkey(key, label)``.

    Spark's xxhash64 of the row's values (every column in sorted name order, or `columns` in the
    order given) behind the subkey's two longs, so the Spark runner computes the same score in the
    JVM. Value-based: the same row scores the same in any batch, partition or order; identical
    rows score equally (they publish the same values, so either may be kept). Keyed, not a PRF
    (see release.dp.rowhash).
    """
    from release.dp.rowhash import row_score

    return row_score(frame, subkey(key, label), columns)


def keyed_ids(values: pd.Series, key: bytes, label: str) -> np.ndarray:
    """A keyed 64-bit id per value (SipHash of its digest): equal values share an id in every batch."""
    d = pd.util.hash_array(np.asarray(values.astype(object).where(values.notna(), None), dtype=object))
    return keyed_u64(d, subkey(key, label))


# ----------------------------------------------------------------------------------------- accumulators

class Accumulator(Protocol[S, R]):
    """An aggregate over batches: create / add / merge / finish (states small and picklable)."""

    def create(self) -> S: ...

    def add(self, state: S, batch: pa.RecordBatch | pa.Table) -> S: ...

    def merge(self, a: S, b: S) -> S: ...

    def finish(self, state: S) -> R: ...


def accumulate(acc: Accumulator[S, R], batches: Iterable[pa.RecordBatch | pa.Table]) -> R:
    """Run an accumulator over batches in one process (what a runner does partition-wise, then merges)."""
    state = acc.create()
    for b in batches:
        state = acc.add(state, b)
    return acc.finish(state)


@dataclass(frozen=True)
class GroupCounts:
    """Counts of rows per combination of `columns` (nulls are a value of their own).

    State: an Arrow table (columns..., `count`) with one row per combination seen; merging
    concatenates and sums. The result is a pandas frame sorted by the columns (nulls last).
    """

    columns: tuple[str, ...]

    def create(self) -> pa.Table:
        return pa.table({"count": pa.array([], pa.int64())})

    def _part(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        t = t.select(list(self.columns))
        if not self.columns:
            return pa.table({"count": pa.array([t.num_rows], pa.int64())})
        g = t.group_by(list(self.columns), use_threads=False).aggregate([([], "count_all")])
        return g.rename_columns([*self.columns, "count"]).select([*self.columns, "count"])

    def add(self, state: pa.Table, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        return self.merge(state, self._part(batch))

    def merge(self, a: pa.Table, b: pa.Table) -> pa.Table:
        if a.num_columns == 1 and a.num_rows == 0:
            return b
        if b.num_columns == 1 and b.num_rows == 0:
            return a
        both = pa.concat_tables([a, b.cast(a.schema)])
        if not self.columns:
            return pa.table({"count": pa.array([pc.sum(both["count"]).as_py() or 0], pa.int64())})
        g = both.group_by(list(self.columns), use_threads=False).aggregate([("count", "sum")])
        return g.rename_columns([*self.columns, "count"]).select([*self.columns, "count"])

    def finish(self, state: pa.Table) -> pd.DataFrame:
        if state.num_columns == 1:
            return pd.DataFrame({**{c: [] for c in self.columns}, "count": pd.Series([], dtype="int64")}) \
                if state.num_rows == 0 else state.to_pandas()
        df = state.to_pandas(types_mapper=_pandas_type)
        return df.sort_values(list(self.columns), kind="mergesort", na_position="last").reset_index(drop=True)


@dataclass(frozen=True)
class FrequencyTable:
    """The k-anonymity frequency table: quasi-identifier combinations with their count and sensitive-value counts.

    Far smaller than the records (one row per combination and sensitive value); the lattice
    search and the risk figures need nothing else.
    """

    quasi_identifiers: tuple[str, ...]
    sensitive: tuple[str, ...] = ()

    def _inner(self) -> GroupCounts:
        return GroupCounts((*self.quasi_identifiers, *self.sensitive))

    def create(self) -> pa.Table:
        return self._inner().create()

    def add(self, state: pa.Table, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        return self._inner().add(state, batch)

    def merge(self, a: pa.Table, b: pa.Table) -> pa.Table:
        return self._inner().merge(a, b)

    def finish(self, state: pa.Table) -> pd.DataFrame:
        return self._inner().finish(state)


@dataclass(frozen=True)
class DuplicateIds:
    """Rows whose record id occurs more than once (the uniqueness rule), over every batch.

    State: (64-bit value digests, row numbers). Two ids sharing a digest count as duplicates
    (about 2**-64 per pair: at worst a valid row is refused, never a duplicate let through).
    """

    column: str

    def create(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)

    def add(self, state: tuple[np.ndarray, np.ndarray], batch: pa.RecordBatch | pa.Table,
            rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        col = batch.column(batch.schema.get_field_index(self.column)).to_pandas()
        present = col.notna().to_numpy()
        d = pd.util.hash_array(np.asarray(col.astype(object), dtype=object)[present])
        if rows is None:
            rows = (np.flatnonzero(present) + 1).astype(np.int64)
        else:
            rows = np.asarray(rows, dtype=np.int64)[present]
        return self.merge(state, (d, rows))

    def merge(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])

    def finish(self, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        d, rows = state
        if len(d) == 0:
            return np.zeros(0, dtype=np.int64)
        _, inv, cnt = np.unique(d, return_inverse=True, return_counts=True)
        return np.sort(rows[cnt[inv] > 1])


# ------------------------------------------------------------------------------------ evidence merging

@dataclass(frozen=True)
class Deferred:
    """An evidence figure that needs the whole column: a state per batch, merged, then finished once.

    `merge` and `finish` are module-level functions (picklable); the default merge concatenates
    NumPy arrays or pandas frames.
    """

    state: Any
    finish: Callable[[Any], Any]
    merge: Callable[[Any, Any], Any] | None = None

    def merged(self, other: Deferred) -> Deferred:
        fn = self.merge or concat_states
        return Deferred(fn(self.state, other.state), self.finish, self.merge)


def counted(n: int | None) -> Any:
    """A count figure that adds up across batches (None: not counted, the same in every batch)."""
    if n is None:
        return None
    return Deferred(int(n), int, _add)


def _add(a: int, b: int) -> int:
    return int(a) + int(b)


def concat_states(a: Any, b: Any) -> Any:
    if isinstance(a, pd.DataFrame):
        return pd.concat([a, b], ignore_index=True)
    if isinstance(a, tuple):
        return tuple(concat_states(x, y) for x, y in zip(a, b, strict=True))
    return np.concatenate([a, b])


def distinct_count(values: np.ndarray) -> int:
    """Finish of a distinct-values state (the union of each batch's distinct values)."""
    return int(len(pd.unique(values)))


def union_distinct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return pd.unique(np.concatenate([a, b]))  # type: ignore[no-any-return]


def distinct_state(col: pd.Series) -> Deferred:
    """A Deferred distinct count of a column's non-null values."""
    return Deferred(np.asarray(pd.unique(col.dropna().to_numpy())), distinct_count, union_distinct)


def merge_evidence(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The evidence of the whole input from its batches' evidence (the result does not depend on batch order).

    Per key: Deferred states merge and finish (counts are `counted`); dicts merge key by key;
    plain values must be equal in every batch (settings, network sizes) and are kept. Anything
    else differing is a bug in the step.
    """
    if not parts:
        return {}
    merged = _merge_values(parts)
    return finish_evidence(merged)


def _merge_values(vals: list[Any]) -> Any:
    first = vals[0]
    if isinstance(first, Deferred):
        acc = first
        for v in vals[1:]:
            acc = acc.merged(v)
        return acc
    if isinstance(first, dict):
        keys = list(first)
        for v in vals[1:]:
            keys += [k for k in v if k not in keys]
        return {k: _merge_values([v[k] for v in vals if k in v]) for k in keys}
    if all(_same(v, first) for v in vals[1:]):
        return first
    raise InternalError(f"evidence differs between batches and has no merge rule: {type(first).__name__}"
                        " (this is a bug: make it a Deferred)")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else bool(np.array_equal(a, b))
    except (TypeError, ValueError):
        return False


def finish_evidence(ev: Any) -> Any:
    """Finish every Deferred in an evidence dict (a single batch finishes the same way)."""
    if isinstance(ev, Deferred):
        return finish_evidence(ev.finish(ev.state))
    if isinstance(ev, dict):
        out = {k: finish_evidence(v) for k, v in ev.items()}
        # A deferred figure may finish to a dict to splice in: keys starting "**" hold them.
        for k in [k for k in out if k.startswith("**")]:
            spliced = out.pop(k)
            if isinstance(spliced, dict):
                out.update(spliced)
        return out
    return ev


# ------------------------------------------------------------------------------------------ the pipeline

@dataclass
class BatchResult:
    """What one batch (or many, merged) reports besides its rows: validation and the steps' evidence."""

    validation: ValidationReport | None = None
    evidence: list[list[dict[str, Any]]] = field(default_factory=list)
    "per pipeline step: the evidence parts of the batches so far (merged by merge_evidence at the end)"
    rows_in: int = 0
    rows_out: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    "manifest entries the steps set (network and layer hashes: the same in every batch)"
    seconds: list[float] = field(default_factory=list)
    "per pipeline step: seconds spent (summed over batches)"
    validate_seconds: float = 0.0

    def merge(self, other: BatchResult) -> BatchResult:
        from release.validate import merge_reports

        v = other.validation if self.validation is None else (
            self.validation if other.validation is None else merge_reports(self.validation, other.validation))
        ev = [a + b for a, b in zip(self.evidence, other.evidence, strict=True)] if self.evidence and \
            other.evidence else (self.evidence or other.evidence)
        # Evidence parts are merged lazily: keep them few by folding now (states stay small).
        ev = [[_merge_values(p)] if len(p) > 1 else p for p in ev]
        secs = [a + b for a, b in zip(self.seconds, other.seconds, strict=True)] if self.seconds and \
            other.seconds else (self.seconds or other.seconds)
        return BatchResult(v, ev, self.rows_in + other.rows_in, self.rows_out + other.rows_out,
                           {**self.manifest, **other.manifest}, secs,
                           self.validate_seconds + other.validate_seconds)

    def step_evidence(self) -> list[dict[str, Any]]:
        return [merge_evidence(p) for p in self.evidence]


@dataclass(frozen=True)
class BatchContext:
    """What the row pipeline is bound to: the policy, the run's identity and keyed secrets, picklable.

    `options` holds only plain values (paths, names), never the run's open files.
    """

    policy: Policy
    policy_path: Path | None
    release_id: str
    now: datetime
    run_key: bytes
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "input"

    @classmethod
    def of(cls, ctx: StepContext, source: str = "input") -> BatchContext:
        opts = {k: v for k, v in ctx.options.items() if not k.startswith("_") and _plain(v)}
        return cls(ctx.policy, ctx.policy_path, ctx.release_id, ctx.now, ctx.run_key, ctx.seed, opts, source)


def _plain(v: Any) -> bool:
    if isinstance(v, (str, int, float, bool, Path)) or v is None:
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def arrow_type(spec: Any) -> pa.DataType:
    """The Arrow type a column of a declared type travels as between pipeline stages."""
    from release.policy.base import ColumnType

    t = spec.type
    if t in (ColumnType.string, ColumnType.category):
        return pa.string()
    if t == ColumnType.integer:
        return pa.int64()
    if t == ColumnType.float:
        return pa.float64()
    if t == ColumnType.boolean:
        return pa.bool_()
    return pa.timestamp("ns")


def arrow_schema(schema: Schema) -> pa.Schema:
    return pa.schema([pa.field(c, arrow_type(s)) for c, s in schema.items()])


def _pandas_type(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # Text stays in Arrow memory (no Python object per value): pandas' Arrow-backed strings.
        return pd.StringDtype("pyarrow")
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def to_frame(batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
    """A typed batch as the pandas frame steps take (nullable integers, booleans and strings)."""
    df = batch.to_pandas(types_mapper=_pandas_type)
    for name, typ in zip(batch.schema.names, batch.schema.types, strict=True):
        if pa.types.is_timestamp(typ):
            df[name] = df[name].astype("datetime64[ns]")
    return df


def raw_frame(batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
    """A raw input batch as validation reads it: text columns as pandas strings kept in Arrow memory
    (validation's text checks and stripping then run in Arrow's kernels, with no Python object per value)."""
    return batch.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow")
                           if pa.types.is_string(t) or pa.types.is_large_string(t) else None)


def to_batch(frame: pd.DataFrame, schema: pa.Schema) -> pa.RecordBatch:
    """A step's frame as a record batch of the declared schema."""
    cols = []
    for f in schema:
        s = frame[f.name]
        if pa.types.is_timestamp(f.type):
            arr = pa.array(pd.to_datetime(s).astype("datetime64[ns]"), type=f.type, from_pandas=True)
        elif pa.types.is_string(f.type) and not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            arr = pa.array(s.astype("string"), type=f.type, from_pandas=True)
        else:
            arr = pa.array(s, type=f.type, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):  # Arrow-backed pandas columns come as chunked arrays
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=f.type)
        cols.append(arr.cast(f.type) if arr.type != f.type else arr)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


class _ProcessCache:
    """Per-process step contexts (not pickled: rebuilt on each executor from the bound context)."""

    contexts: dict[int, StepContext] = {}


@dataclass(frozen=True)
class RowPipeline:
    """The row function of one run: validate and convert, then the row-local prefix of the steps.

    Pure and picklable (see the module docstring). `steps` are indices into policy.steps;
    `schemas[i]` is the declared schema before pipeline step i (the last: after them).
    """

    context: BatchContext
    steps: tuple[int, ...]
    schemas: tuple[Any, ...]
    validate: bool = True
    exclude_rows: tuple[int, ...] = ()
    "Input row numbers refused by a rule over all batches (duplicate ids), dropped before the steps."

    def output_schema(self, input_schema: pa.Schema | None = None) -> pa.Schema:
        return arrow_schema(self.schemas[-1])

    def input_schema(self) -> pa.Schema:
        """The typed schema validation produces (what the first step reads)."""
        return arrow_schema(self.schemas[0])

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.process(batch)[0]

    def _step_context(self) -> StepContext:
        key = id(self)
        ctx = _ProcessCache.contexts.get(key)
        # A reused worker may unpickle this run's pipeline where an earlier run's lay (the same id()):
        # its context is another run's (policy, keys), so the run's own release id must match too.
        if ctx is None or ctx.release_id != self.context.release_id:
            c = self.context
            ctx = StepContext(policy=c.policy, policy_path=c.policy_path, schema=self.schemas[0],
                              release_id=c.release_id, now=c.now, seed=c.seed, options=dict(c.options),
                              run_key=c.run_key)
            _ProcessCache.contexts.clear()
            _ProcessCache.contexts[key] = ctx
        return ctx

    def process(self, batch: pa.RecordBatch | pa.Table | pd.DataFrame, row_offset: int = 0
                ) -> tuple[pa.RecordBatch, BatchResult]:
        import time

        from release.validate import validate_batch

        result = BatchResult(rows_in=len(batch) if isinstance(batch, pd.DataFrame) else batch.num_rows)
        t0 = time.perf_counter()
        if self.validate:
            raw = batch.copy() if isinstance(batch, pd.DataFrame) else raw_frame(batch)
            if ROW in raw.columns:
                rows = raw.pop(ROW).to_numpy(dtype=np.int64)
            else:
                rows = np.arange(row_offset + 1, row_offset + len(raw) + 1, dtype=np.int64)
            frame, result.validation = validate_batch(raw, self.context.policy, self.context.now, rows,
                                                      exclude_rows=np.asarray(self.exclude_rows, dtype=np.int64))
        else:
            frame = batch.copy() if isinstance(batch, pd.DataFrame) else to_frame(batch)
            if ROW in frame.columns:
                frame = frame.drop(columns=[ROW])
        ctx = self._step_context()
        for j, i in enumerate(self.steps):
            step = self.context.policy.steps[i]
            ctx.schema = self.schemas[j]
            ts = time.perf_counter()
            frame, ev = step.apply_batch(frame, ctx)
            result.evidence.append([ev])
            result.seconds.append(time.perf_counter() - ts)
        result.validate_seconds = time.perf_counter() - t0 - sum(result.seconds)
        result.manifest = dict(ctx.manifest)
        out = to_batch(frame, self.output_schema())
        result.rows_out = out.num_rows
        return out, result

    def map(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Partition-wise application (what `mapInArrow` calls): batches in, batches out."""
        for b in batches:
            yield self(b)


def row_local_prefix(policy: Policy) -> tuple[int, ...]:
    """Indices of the policy's leading row-local steps (the rest need a global decision first)."""
    out = []
    for i, step in enumerate(policy.steps):
        if not getattr(type(step), "row_local", False):
            break
        out.append(i)
    return tuple(out)


def row_pipeline(plan: Plan, context: BatchContext | StepContext, *, validate: bool = True,
                 exclude_rows: Iterable[int] = ()) -> RowPipeline:
    """Compile the row pipeline of one run (picklable; ship it to executors as it is)."""
    bctx = context if isinstance(context, BatchContext) else BatchContext.of(context)
    steps = row_local_prefix(bctx.policy)
    schemas = tuple(plan.schemas[: len(steps) + 1])
    pipe = RowPipeline(bctx, steps, schemas, validate, tuple(int(r) for r in exclude_rows))
    if isinstance(context, StepContext):
        # In this process the steps use the run's own context (its approved copies of the network
        # and layers, its manifest); a pickled copy elsewhere rebuilds one from the bound values.
        _ProcessCache.contexts.clear()
        _ProcessCache.contexts[id(pipe)] = context
    return pipe


def iter_batches(table: pa.Table, rows: int) -> Iterator[pa.RecordBatch]:
    """A table as record batches of at most `rows` rows (zero-copy slices)."""
    n = table.num_rows
    if n == 0:
        yield from table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        return
    for start in range(0, n, max(1, rows)):
        yield from table.slice(start, rows).combine_chunks().to_batches()

