"""Contribution bounding: cap the records and cells each privacy unit contributes, unpredictably but fairly."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from release.batches import keyed_ids, row_scores, subkey
from release.dp.rowhash import order_key


class BoundingKey:
    """Keyed per-row scores ranking a unit's rows and cells (release.dp.rowhash): Spark's xxhash64 chain
    behind two longs of a subkey of the run's key, computed alike by numpy here and by the JVM on Spark.

    Which rows survive depends neither on input order nor on how the input was cut into batches
    or partitions (a score is a function of the key and the row's values; identical rows score
    equally and publish the same values), and nothing an outsider can predict without the key. The
    key is the run's secret (fresh from the OS per run; fixed only in test mode). The guarantee
    rests on the selection being a function of each unit's own rows, not on the hash being a PRF:
    XXH64 behind a secret prefix is keyed but not a cryptographic PRF (SipHash stays for unit ids).
    Never a NumPy or stdlib pseudo-random generator, never Python's process-salted hash().
    """

    ROW = "dp-bounding-row"
    CELL = "dp-bounding-cell"

    def __init__(self, key: bytes) -> None:
        self.key = key

    def unit_ids(self, values: pd.Series) -> np.ndarray:
        return keyed_ids(values, self.key, "dp-bounding-unit").view(np.int64)

    def subkey(self, label: str) -> bytes:
        """The 16-byte subkey whose two longs prefix the score's chain (Spark's side builds the same)."""
        return subkey(self.key, label)

    def cell_scores(self, cells: pd.DataFrame) -> np.ndarray:
        """One score (int64) per (unit, cell) row given, over its columns in the order given (the unit's
        raw value first, then the cell's `by` values): equal pairs score equally."""
        return row_scores(cells, self.key, self.CELL, list(cells.columns))

    def row_scores(self, rows: pd.DataFrame | pa.Table | None, digests: np.ndarray | None = None) -> np.ndarray:
        """Scores (int64) of whole rows (every column), or the precomputed ones (`digests`, any 64-bit view)."""
        if digests is not None:
            return np.ascontiguousarray(digests).view(np.int64)
        assert rows is not None
        return row_scores(rows, self.key, self.ROW)


def bounding_key(key: bytes | int | None) -> BoundingKey:
    """Scores for one bounding: the run key (bytes); a test seed (int, test mode); None draws a fresh key."""
    if isinstance(key, bytes) and key:
        return BoundingKey(key)
    if isinstance(key, int):
        return BoundingKey(hashlib.sha256(f"dp-bounding:{key}".encode()).digest())
    return BoundingKey(os.urandom(32))


def unit_ids(values: pd.Series, key: BoundingKey | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An int64 id per row naming its privacy unit, and the mask of null units.

    Text ids are reduced to a keyed 64-bit digest (SipHash under the run key: the same in every
    batch and process, unlike Python's salted hash()). Two ids with the same digest become one
    unit. That only ever makes bounding stricter (the merged unit keeps at most the bound, so
    each of the two keeps at most the bound too), never looser; at 2**-64 per pair it is also
    vanishingly rare. Integer ids are used as they are (no merging at all).
    """
    nulls = values.isna().to_numpy()
    if pd.api.types.is_signed_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64, na_value=0), nulls
    k = key or bounding_key(None)
    return k.unit_ids(values), nulls


def _unit_order(unit_codes: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positions sorted by (unit, score as a signed long): each unit's rows in the order Spark's window
    (partition by unit order by score) ranks them; equal scores (identical rows) in either order."""
    s = order_key(score)
    ubits = max(int(unit_codes.max()).bit_length(), 1)
    if ubits <= 40:
        # One sort on a packed key (unit in the high bits, the score's high bits below) beats a lexsort;
        # it is exact unless two rows of a unit share the packed key with different scores (rare: then lexsort).
        packed = (unit_codes.astype(np.uint64) << np.uint64(64 - ubits)) | (s >> np.uint64(ubits))
        order = np.argsort(packed)
        ps, ss = packed[order], s[order]
        tie = ps[1:] == ps[:-1]
        if not tie.any() or np.array_equal(ss[1:][tie], ss[:-1][tie]):
            return order
    return np.lexsort((s, unit_codes))


def _rank_within(unit_codes: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank of each row among the rows of its unit, by score (0 = first kept)."""
    if len(unit_codes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = _unit_order(unit_codes, score)
    sorted_units = unit_codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_units[1:] != sorted_units[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - run_start
    return rank


def _least_within(unit_codes: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k rows of least score in each unit (all of a unit's rows when it has at most k)."""
    if len(unit_codes) == 0:
        return np.zeros(0, dtype=np.intp)
    order = _unit_order(unit_codes, score)
    su = unit_codes[order]
    # In unit order, a row is among its unit's first k unless the row k places earlier is the same unit.
    first = np.ones(len(order), dtype=bool)
    first[k:] = su[k:] != su[:-k]
    return order[first]


def bound_contributions(frame: pd.DataFrame, unit: str, record_id: str | None, cell_cols: list[str],
                        max_records: int, max_groups: int | None, key: BoundingKey,
                        rows: np.ndarray | None = None, digests: np.ndarray | None = None
                        ) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of the rows kept so no unit has more than max_records rows in max_groups cells.

    A unit over a bound keeps a uniformly random subset: its distinct cells ranked by a random
    score per (unit, cell), then its rows by a random score per row. A null unit is its own unit
    per row (it cannot be linked to anything else). Only units over a bound draw scores, and only
    rows whose hash bucket is over the bound are factorized into units. `rows` (optional) marks
    the rows that can count at all (inside the key sets); only they take a unit's slots, the
    others are never kept. `digests` (optional): each row's score over every column
    (``key.row_scores``, any 64-bit view), computed before the frame was pruned to the columns read
    here (release.engine.PrunedFrame); without it the rows' scores hash every column of `frame`. Statistics: rows_in, rows_kept,
    units_over_bound, units_truncated.
    """
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=bool), {"rows_in": 0, "rows_kept": 0, "units_over_bound": 0, "units_truncated": 0}
    ids, nulls = unit_ids(frame[unit], key)
    eligible = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    # A null unit is one row: always within the bounds, always kept when eligible.
    counted = eligible & ~nulls if nulls.any() else eligible
    all_rows = bool(counted.all())
    cell_bound = max_groups is not None and bool(cell_cols)
    limit = min(max_records, max_groups) if max_groups is not None and cell_bound else max_records
    # Cheap pre-pass: rows per hash bucket bound rows per unit from above, so a row in a bucket
    # within the limit is in a unit within it. Only the other rows are factorized into units.
    bits = min(22, max(8, (2 * n).bit_length()))  # 4M buckets: 32 MB of counts, few false alarms
    bucket = (ids & ((1 << bits) - 1)).astype(np.intp)
    per_bucket = np.bincount(bucket if all_rows else bucket[counted], minlength=1 << bits)
    over = per_bucket[bucket] > limit
    sub = np.flatnonzero(over if all_rows else counted & over)
    codes, _ = pd.factorize(ids[sub])
    codes = codes.astype(np.int64, copy=False)
    per_unit = np.bincount(codes)
    over_unit = per_unit[codes] > limit
    sub, codes = sub[over_unit], codes[over_unit]
    keep = eligible.copy()
    truncated = 0
    if len(sub):
        # A cell's score reads the unit's own value (not its keyed id): Spark's side hashes the column.
        cells = frame[list(dict.fromkeys([unit, *cell_cols]))].iloc[sub] if cell_bound else None
        kept = _bound_rows(frame.iloc[sub] if digests is None else None, cells, codes, max_records, max_groups, key,
                           count=None if cell_bound else per_unit,
                           digests=None if digests is None else np.ascontiguousarray(digests).view(np.int64)[sub])
        keep[sub] = kept
        # Without a cell bound every unit here is over the record bound, so each loses rows.
        truncated = (int(np.count_nonzero(np.bincount(codes[~kept], minlength=len(per_unit)))) if cell_bound
                     else int(np.count_nonzero(per_unit > limit)))
    return keep, {"rows_in": int(eligible.sum()), "rows_kept": int(keep.sum()),
                  "units_over_bound": int(np.count_nonzero(per_unit > limit)), "units_truncated": truncated}


def _bound_rows(rows: pd.DataFrame | None, cells: pd.DataFrame | None, codes: np.ndarray, max_records: int,
                max_groups: int | None, key: BoundingKey, count: np.ndarray | None = None,
                digests: np.ndarray | None = None) -> np.ndarray:
    """Rows kept among the rows of units over a bound (`count`: rows per unit, when no cell bound applies).

    `rows` are those rows (every column: a row's score is keyed on its values), `cells` their
    unit and cell columns, `codes` their unit numbers; `digests` (instead of `rows`) their
    precomputed row scores.
    """
    n = len(codes)
    keep = np.ones(n, dtype=bool)
    if cells is not None and max_groups is not None:
        pair = cells.groupby(list(cells.columns), sort=False, observed=True, dropna=False).ngroup().to_numpy()
        # One score per (unit, cell): rank the distinct cells of each unit, keep the first max_groups.
        npairs = int(pair.max()) + 1
        first = np.unique(pair, return_index=True)[1]
        rank_of_pair = np.empty(npairs, dtype=np.int64)
        rank_of_pair[pair[first]] = _rank_within(codes[first], key.cell_scores(cells.iloc[first]))
        keep &= rank_of_pair[pair] < max_groups
    # The record bound, among the rows the cell bound left: only units still over it are ranked.
    if count is None:
        idx = np.flatnonzero(keep)
        u = codes[idx]
        count = np.bincount(u)
        over = count[u] > max_records
        idx, u = idx[over], u[over]
    else:  # every row given is in a unit over the record bound
        idx, u = np.arange(n), codes
    if not len(idx):
        return keep
    # A unit keeps its max_records rows of least keyed score: a uniformly random subset to
    # anyone without the key, and the same subset however the input was ordered or cut.
    score = (key.row_scores(rows.iloc[idx]) if digests is None  # type: ignore[union-attr]
             else key.row_scores(None, digests[idx]))
    keep[idx] = False
    keep[idx[_least_within(u, score, max_records)]] = True
    return keep
