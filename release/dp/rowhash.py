"""Keyed row scores both runners compute natively: Spark's xxhash64 (XXH64 chained column by column) in numpy.

Spark's ``xxhash64(e1, e2, ...)`` is the standard XXH64 applied column by column, each column's hash
the next one's seed (the first seed 42), null values skipped. Per value: integers as 4 bytes
(hashInt), longs 8 (hashLong), doubles hashLong(doubleToLongBits(x)), booleans as the int 1 / 0,
strings their UTF-8 bytes (hashUnsafeBytes), timestamps their long microseconds; -0.0 hashes as 0.0
and every NaN as Java's one NaN (checked against Spark by tests/system/test_spark_dp.py). ``xxh64_chain``
computes exactly that over Arrow arrays, vectorized: a loop over columns and over 8-byte word
positions of strings (rows sorted by byte length, so each position is one slice), never over records.

``row_score`` is DP contribution bounding's score of a row (release.dp.bounding): under the two
signed longs (k0, k1) of a 16-byte subkey of the run key,

    xxhash64(k0, k1, nullmask..., x_1, ..., x_m)

over the columns in a canonical order, where x_i is the column's value for longs, doubles, booleans and
timestamps, and xxhash64(k0, k1, s) of the value for strings (per distinct value: the seed is the same
for every row). Floats are canonical first (NaN is null, -0.0 is 0.0: the local frame cannot tell NaN
from null), and the null mask (one long per 63 columns, bit i set when column i is null) keeps nulls
in different columns from colliding. ``spark_row_score`` is the same expression in Spark SQL, built
from built-in functions only, so the JVM computes it without a Python worker; both compare as signed
int64.

Privacy: the DP guarantee rests on the selection being a function of each unit's own rows (a
neighbour changes only its own unit's kept rows), not on the hash being a pseudo-random function.
XXH64 under a secret key-derived prefix is keyed (in practice unpredictable without the run key) but
it is not a cryptographic PRF. SipHash (release.batches.keyed_u64) stays where a PRF is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from release.errors import InternalError

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
SPARK_SEED = 42
"The seed Spark's xxhash64 starts its chain with."
_M64 = (1 << 64) - 1


class NotNative(Exception):
    """A column type both runners cannot hash the same way (the caller keeps the Python path)."""


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * P2
    h = h ^ (h >> np.uint64(29))
    h = h * P3
    return h ^ (h >> np.uint64(32))


def hash_long(v: np.ndarray, seed: np.ndarray | np.uint64) -> np.ndarray:
    """XXH64 of 8-byte values (Spark's XXH64.hashLong), per element; `v` and `seed` as uint64."""
    with np.errstate(over="ignore"):
        h = seed + P5 + np.uint64(8)
        h = h ^ (_rotl(v * P2, 31) * P1)
        h = _rotl(h, 27) * P1 + P4
        return _fmix(h)


def hash_int(v: np.ndarray, seed: np.ndarray | np.uint64) -> np.ndarray:
    """XXH64 of 4-byte values (Spark's XXH64.hashInt); `v` uint64 holding the int's 32 unsigned bits."""
    with np.errstate(over="ignore"):
        h = seed + P5 + np.uint64(4)
        h = h ^ (v * P1)
        h = _rotl(h, 23) * P2 + P3
        return _fmix(h)


def _round(acc: np.ndarray, word: np.ndarray) -> np.ndarray:
    return _rotl(acc + word * P2, 31) * P1


def hash_bytes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               seed: np.ndarray | np.uint64) -> np.ndarray:
    """XXH64 of byte strings (Spark's XXH64.hashUnsafeBytes): string i is data[starts[i]:starts[i]+lengths[i]].

    Rows are sorted by length, longest first, so at each 8-byte word position the rows still reading
    are a prefix, and among them those inside a 32-byte stripe are a prefix too: one vector operation
    per word position and per step, none per row.
    """
    n = len(starts)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    seeds = np.broadcast_to(np.asarray(seed, dtype=np.uint64), (n,))
    order = np.argsort(-lengths.astype(np.int64), kind="stable")
    L = lengths.astype(np.int64)[order]
    S = starts.astype(np.int64)[order]
    sd = seeds[order]
    # A padded copy, so an 8-byte read past a string's end (never used) stays inside the buffer.
    buf = np.concatenate([np.asarray(data, dtype=np.uint8), np.zeros(8, dtype=np.uint8)])
    win8 = np.lib.stride_tricks.as_strided(buf, shape=(max(len(buf) - 7, 0), 8), strides=(1, 1))
    K = L // 32          # 32-byte stripes
    W = L // 8           # 8-byte words
    neg_k, neg_w = -K, -W  # ascending, for searchsorted of "how many rows have more than x"
    h = np.zeros(n, dtype=np.uint64)
    max_w = int(W[0])
    with np.errstate(over="ignore"):
        nstripe = int(np.searchsorted(neg_k, -1, side="right"))  # rows with at least one stripe
        v1 = sd[:nstripe] + P1 + P2
        v2 = sd[:nstripe] + P2
        v3 = sd[:nstripe].copy()
        v4 = sd[:nstripe] - P1
        lanes = [v1, v2, v3, v4]
        for w in range(max_w + 1):
            if w % 4 == 0:
                k = w // 4
                lo = int(np.searchsorted(neg_k, -k - 1, side="right"))  # rows with K > k
                hi = int(np.searchsorted(neg_k, -k, side="right"))      # rows with K >= k
                if hi > lo:
                    if k == 0:
                        h[lo:hi] = sd[lo:hi] + P5
                    else:
                        a, b, c, d = (x[lo:hi] for x in lanes)
                        acc = _rotl(a, 1) + _rotl(b, 7) + _rotl(c, 12) + _rotl(d, 18)
                        for v in (a, b, c, d):
                            acc = (acc ^ _round(np.zeros_like(v), v)) * P1 + P4
                        h[lo:hi] = acc
                    h[lo:hi] += L[lo:hi].astype(np.uint64)
            if w == max_w:
                break
            stripe = int(np.searchsorted(neg_k, -(w // 4) - 1, side="right"))  # rows with 4*K > w
            reading = int(np.searchsorted(neg_w, -w - 1, side="right"))      # rows with W > w
            word = win8[S[:reading] + 8 * w].copy().view("<u8").ravel()
            if stripe:
                lane = lanes[w % 4]
                lane[:stripe] = _round(lane[:stripe], word[:stripe])
            if reading > stripe:
                t = h[stripe:reading]
                t ^= _round(np.zeros(reading - stripe, dtype=np.uint64), word[stripe:reading])
                h[stripe:reading] = _rotl(t, 27) * P1 + P4
        # The tail: one 4-byte word where at least 4 bytes remain, then single bytes.
        pos = S + 8 * W
        rest = L - 8 * W
        four = np.flatnonzero(rest >= 4)
        if len(four):
            p = pos[four]
            word4 = (buf[p].astype(np.uint64) | (buf[p + 1].astype(np.uint64) << np.uint64(8))
                     | (buf[p + 2].astype(np.uint64) << np.uint64(16)) | (buf[p + 3].astype(np.uint64) << np.uint64(24)))
            t = h[four] ^ (word4 * P1)
            h[four] = _rotl(t, 23) * P2 + P3
            pos[four] += 4
            rest[four] -= 4
        for _ in range(3):
            one = np.flatnonzero(rest > 0)
            if not len(one):
                break
            t = h[one] ^ (buf[pos[one]].astype(np.uint64) * P5)
            h[one] = _rotl(t, 11) * P1
            pos[one] += 1
            rest[one] -= 1
        out[order] = _fmix(h)
    return out


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data bytes, start offsets, lengths) of a string array, read from its Arrow buffers (no copies per value)."""
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
        odt: Any = np.int64
    else:
        arr = arr.cast(pa.string())
        odt = np.int32
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=odt, count=len(arr) + 1 + arr.offset)[arr.offset:].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets[:-1], np.diff(offsets)


def _kind(t: pa.DataType) -> str:
    """How a column of this Arrow type is hashed: 'long', 'int', 'double', 'bool', 'string', 'micros'."""
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "long"
    if pa.types.is_integer(t) and t.bit_width <= 32 and pa.types.is_signed_integer(t) or pa.types.is_date32(t):
        return "int"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "micros"
    raise NotNative(f"type {t}")


def _values(arr: pa.Array, kind: str) -> np.ndarray:
    """The uint64 words Spark hashes for a fixed-width column (nulls: any value, they are skipped)."""
    if kind == "long":
        return arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
    if kind == "int":
        if pa.types.is_date32(arr.type):
            arr = arr.view(pa.int32()) if hasattr(arr, "view") else arr.cast(pa.int32())
        v = arr.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return (v & 0xFFFFFFFF).astype(np.uint64)
    if kind == "bool":
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
    if kind == "double":
        v = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        bits = v.view(np.uint64).copy()
        bits[np.isnan(v)] = np.uint64(0x7FF8000000000000)  # Java's doubleToLongBits: one NaN
        bits[v == 0.0] = np.uint64(0)  # Spark hashes -0.0 as 0.0
        return bits
    if kind == "micros":
        unit = arr.type.unit
        v = arr.cast(pa.timestamp(unit)).view(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        div = {"s": -1_000_000, "ms": -1000, "us": 1, "ns": 1000}[unit]
        if div < 0:
            return (v * -div).view(np.uint64)
        if div == 1:
            return v.view(np.uint64)
        # Truncated toward zero, as Arrow's (and Spark's) nanosecond-to-microsecond cast does.
        q = np.abs(v) // div
        return np.where(v < 0, -q, q).astype(np.int64).view(np.uint64)
    raise InternalError(f"no fixed-width hash for {kind} (this is a bug)")


def _step(h: np.ndarray, arr: pa.Array, kind: str) -> np.ndarray:
    """One link of the chain: h <- hash(value, seed h) where the value is not null, h unchanged where it is."""
    valid = np.ones(len(arr), dtype=bool) if arr.null_count == 0 else \
        pc.is_valid(arr).to_numpy(zero_copy_only=False)
    if kind == "string":
        data, starts, lengths = _string_parts(arr)
        idx = np.flatnonzero(valid)
        out = h.copy()
        out[idx] = hash_bytes(data, starts[idx], lengths[idx], h[idx])
        return out
    v = _values(arr, kind)
    new = hash_int(v, h) if kind in ("int", "bool") else hash_long(v, h)
    return np.where(valid, new, h) if arr.null_count else new


def _array(col: Any) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks()
    if isinstance(col, pa.Array):
        return col
    return _series_array(col)


def xxh64_chain(columns: Sequence[Any], seed: int = SPARK_SEED) -> np.ndarray:
    """Spark's xxhash64 over these columns (Arrow arrays or pandas series), as signed int64 per row."""
    if not columns:
        raise InternalError("xxh64_chain needs a column (this is a bug)")
    arrs = [_array(c) for c in columns]
    h = np.full(len(arrs[0]), np.uint64(seed & _M64), dtype=np.uint64)
    for a in arrs:
        h = _step(h, a, _kind(a.type))
    return h.view(np.int64)


# ------------------------------------------------------------------------------------ the keyed score

def key_longs(key: bytes) -> tuple[int, int]:
    """The two signed longs (little-endian halves) of a 16-byte subkey: the chain's secret prefix."""
    if len(key) != 16:
        raise InternalError("a row score needs a 16-byte subkey (this is a bug)")
    return int.from_bytes(key[:8], "little", signed=True), int.from_bytes(key[8:], "little", signed=True)


def _prefix(key: bytes) -> np.uint64:
    """The chain's state after the key's two longs: xxhash64(k0, k1) from seed 42."""
    k0, k1 = key_longs(key)
    with np.errstate(over="ignore"):
        h = hash_long(np.array([k0 & _M64], dtype=np.uint64), np.uint64(SPARK_SEED))
        h = hash_long(np.array([k1 & _M64], dtype=np.uint64), h)
    return np.uint64(h[0])


def _series_array(s: pd.Series) -> pa.Array:
    """A frame column as the Arrow array the pipeline's declared type gives it (floats: NaN is null)."""
    got = _series_arrow(s)
    return got.combine_chunks() if isinstance(got, pa.ChunkedArray) else got


def _series_arrow(s: pd.Series) -> pa.Array | pa.ChunkedArray:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        s = s.astype(object).where(s.notna(), None)
        dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        return pa.array(s, type=pa.bool_(), from_pandas=True)
    if pd.api.types.is_integer_dtype(dt):
        return pa.array(s, type=pa.int64(), from_pandas=True)
    if pd.api.types.is_float_dtype(dt):
        return pa.array(s, type=pa.float64(), from_pandas=True)
    if pd.api.types.is_datetime64_dtype(dt):
        return pa.array(s.astype("datetime64[ns]"), type=pa.timestamp("ns"), from_pandas=True)
    if isinstance(dt, pd.StringDtype) or pd.api.types.is_object_dtype(dt):
        try:
            return pa.array(s, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise NotNative(f"column {s.name!r}: not all text") from e
    raise NotNative(f"column {s.name!r} of dtype {dt}")


def _local_array(s: pd.Series) -> pa.Array:
    """A frame column for the score: its declared-type array, or pandas' 64-bit value hash (as a long)
    for any other type (no Spark expression equals that one: see spark_kind)."""
    try:
        arr = _series_array(s)
        _kind(arr.type)
        return arr
    except NotNative:
        vals = np.asarray(s.astype(object).where(s.notna(), None), dtype=object)
        h = pd.util.hash_array(vals).view(np.int64)
        return pa.array(h, mask=~s.notna().to_numpy(), type=pa.int64())


def _canonical(arr: pa.Array) -> tuple[pa.Array, str]:
    """(array, kind) as the score hashes it: floats with NaN as null and -0.0 as 0.0."""
    kind = _kind(arr.type)
    if kind == "int" and not pa.types.is_date32(arr.type):
        return arr.cast(pa.int64()), "long"  # Spark's side casts every integer column to long
    if kind == "double":
        v = arr.cast(pa.float64())
        arr = pc.if_else(pc.is_nan(v), pa.scalar(None, pa.float64()), pc.add(v, pa.scalar(0.0)))
    return arr, kind


def _string_hashes(arr: pa.Array, seed: np.uint64) -> np.ndarray:
    """xxhash64(k0, k1, s) per row of a string column (null rows: the seed itself): hashed per distinct value
    (the seed is the same for every row) unless the column's first rows are mostly distinct."""
    arr = arr.cast(pa.large_string()) if pa.types.is_large_string(arr.type) else arr.cast(pa.string())
    head = arr.slice(0, 4096)
    if pc.count_distinct(head).as_py() * 4 > len(head):
        # Mostly distinct values (ids, names): hashing every row beats building a dictionary first.
        data, starts, lengths = _string_parts(arr)
        return np.where(pc.is_valid(arr).to_numpy(zero_copy_only=False),
                        hash_bytes(data, starts, lengths, seed), seed) if arr.null_count else \
            hash_bytes(data, starts, lengths, seed)
    enc = pc.dictionary_encode(arr)
    codes = enc.indices.to_numpy(zero_copy_only=False)
    uniques = enc.dictionary
    data, starts, lengths = _string_parts(uniques)
    per = hash_bytes(data, starts, lengths, seed)
    out = np.full(len(arr), seed, dtype=np.uint64)
    if arr.null_count:
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        out[valid] = per[codes[valid].astype(np.int64)]
    else:
        out = per[codes.astype(np.int64)]
    return out


def score_columns(columns: Sequence[tuple[str, pa.Array]], key: bytes) -> np.ndarray:
    """The keyed score (signed int64) of each row of these named columns, in the order given."""
    if not columns:
        raise InternalError("a row score needs a column (this is a bug)")
    n = len(columns[0][1])
    seed = _prefix(key)
    canon = [_canonical(a) for _, a in columns]
    h = np.full(n, seed, dtype=np.uint64)
    for start in range(0, len(canon), 63):
        mask = np.zeros(n, dtype=np.int64)
        for i, (a, _) in enumerate(canon[start:start + 63]):
            if a.null_count:
                mask |= np.where(pc.is_null(a).to_numpy(zero_copy_only=False), np.int64(1) << np.int64(i), 0)
        h = hash_long(mask.view(np.uint64), h)
    for a, kind in canon:
        if kind == "string":
            h = hash_long(_string_hashes(a, seed), h)
        else:
            h = _step(h, a, kind)
    return h.view(np.int64)


def row_score(frame: pd.DataFrame | pa.Table, key: bytes, columns: Sequence[str] | None = None) -> np.ndarray:
    """Bounding score of each row over `columns` (default: every column, in sorted name order) as int64.

    A column of a type no rule covers (not one the pipeline declares) is hashed through pandas'
    value hash instead: then only the local function computes the score, and Spark's runner keeps
    its Python path for such columns (spark_kind raises NotNative for them).
    """
    names = sorted(frame.columns if isinstance(frame, pd.DataFrame) else frame.column_names) \
        if columns is None else list(columns)
    if isinstance(frame, pd.DataFrame):
        cols = [(c, _local_array(frame[c])) for c in names]
    else:
        cols = [(c, _array(frame.column(c))) for c in names]
    if not cols:
        return np.zeros(len(frame), dtype=np.int64)
    return score_columns(cols, key)


def order_key(score: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as the signed int64 scores are (Spark orders the score as a signed long)."""
    return np.asarray(score).view(np.uint64) ^ np.uint64(1 << 63)


# ------------------------------------------------------------------------------------------ in Spark

def spark_kind(t: Any) -> str:
    """How a Spark column of this type is hashed in the score (raises NotNative otherwise)."""
    from pyspark.sql import types as T

    if isinstance(t, T.StringType):
        return "string"
    if isinstance(t, T.LongType | T.IntegerType | T.ShortType | T.ByteType):
        return "long"
    if isinstance(t, T.DoubleType | T.FloatType):
        return "double"
    if isinstance(t, T.BooleanType):
        return "bool"
    if isinstance(t, T.TimestampType) or type(t).__name__ == "TimestampNTZType":
        return "micros"
    raise NotNative(f"Spark type {t.simpleString()}")


def arrow_kind(t: pa.DataType) -> str:
    """The score's kind of a column the local frame holds with this (declared) Arrow type."""
    kind = _kind(t)
    return "long" if kind == "int" and not pa.types.is_date32(t) else kind


def spark_row_score(columns: Sequence[tuple[str, str]], key: bytes) -> Any:
    """The score as a Spark SQL expression over (column, kind) pairs in the order given: built-in
    functions only (xxhash64, casts, when), so the JVM computes it with no Python worker."""
    from pyspark.sql import functions as F

    k0, k1 = key_longs(key)
    l0, l1 = F.lit(k0).cast("long"), F.lit(k1).cast("long")
    vals, nulls = [], []
    for name, kind in columns:
        c = F.col(name)
        if kind == "string":
            v = c.cast("string")
            nulls.append(v.isNull())
            vals.append(F.xxhash64(l0, l1, v))
        elif kind == "long":
            v = c.cast("long")
            nulls.append(v.isNull())
            vals.append(v)
        elif kind == "double":
            d = c.cast("double")
            # NaN is null (the local frame cannot tell them apart); -0.0 is 0.0 (Spark's == says they are equal).
            v = F.when(F.isnan(d), F.lit(None).cast("double")).when(d == 0.0, F.lit(0.0)).otherwise(d)
            nulls.append(v.isNull())
            vals.append(v)
        elif kind == "bool":
            v = c.cast("boolean")
            nulls.append(v.isNull())
            vals.append(v)
        elif kind == "micros":
            # As held: xxhash64 hashes a timestamp's long microseconds (naive ones as written; zoned ones
            # in UTC, which the runner's session time zone makes the same).
            v = c
            nulls.append(v.isNull())
            vals.append(v)
        else:
            raise NotNative(f"column {name}: kind {kind}")
    masks = []
    for start in range(0, len(nulls), 63):
        m = F.lit(0).cast("long")
        for i, isnull in enumerate(nulls[start:start + 63]):
            m = m + F.when(isnull, F.lit(1 << i).cast("long")).otherwise(F.lit(0).cast("long"))
        masks.append(m)
    return F.xxhash64(l0, l1, *masks, *vals)
