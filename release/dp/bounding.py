"""Contribution bounding: cap the records and cells each privacy unit contributes, unpredictably but fairly."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd

from release.batches import keyed_ids, keyed_u64, row_digest, row_scores, subkey


class BoundingKey:
    """Keyed per-row scores ranking a unit's rows and cells: SipHash under the run's key (release.batches).

    Which rows survive depends neither on input order nor on how the input was cut into batches
    or partitions (a score is a function of the key and the row's values, plus its occurrence
    among identical rows), and nothing an outsider can predict without the key. The key is the
    run's secret (fresh from the OS per run; fixed only in test mode). Never a NumPy or stdlib
    pseudo-random generator, never Python's process-salted hash().
    """

    def __init__(self, key: bytes) -> None:
        self.key = key

    def unit_ids(self, values: pd.Series) -> np.ndarray:
        return keyed_ids(values, self.key, "dp-bounding-unit").view(np.int64)

    def cell_scores(self, cells: pd.DataFrame) -> np.ndarray:
        """One score per (unit, cell) row given: equal pairs score equally."""
        return keyed_u64(row_digest(cells), subkey(self.key, "dp-bounding-cell"))

    def row_scores(self, rows: pd.DataFrame | None, digests: np.ndarray | None = None) -> np.ndarray:
        """Scores of whole rows, or of their precomputed row digests (then `rows` is not read)."""
        return row_scores(rows, self.key, "dp-bounding-row", digests)


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


def _rank_within(unit_codes: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank of each row among the rows of its unit, by score (0 = first kept)."""
    if len(unit_codes) == 0:
        return np.zeros(0, dtype=np.int64)
    # One sort on a packed key (unit in the high bits, score in the low bits) beats a lexsort.
    ubits = max(int(unit_codes.max()).bit_length(), 1)
    if ubits <= 40:
        packed = (unit_codes.astype(np.uint64) << np.uint64(64 - ubits)) | (score >> np.uint64(ubits))
        order = np.argsort(packed)
    else:  # pragma: no cover - more than 2**40 units
        order = np.lexsort((score, unit_codes))
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
    ubits = max(int(unit_codes.max()).bit_length(), 1)
    if ubits > 40:  # pragma: no cover - more than 2**40 units
        return np.flatnonzero(_rank_within(unit_codes, score) < k)
    order = np.argsort((unit_codes.astype(np.uint64) << np.uint64(64 - ubits)) | (score >> np.uint64(ubits)))
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
    others are never kept. `digests` (optional): each row's ``row_digest`` over every column,
    computed before the frame was pruned to the columns read here (release.engine.PrunedFrame);
    without it the rows' scores hash every column of `frame`. Statistics: rows_in, rows_kept,
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
        cells = frame[cell_cols].iloc[sub].assign(_unit=ids[sub]) if cell_bound else None
        kept = _bound_rows(frame.iloc[sub] if digests is None else None, cells, codes, max_records, max_groups, key,
                           count=None if cell_bound else per_unit,
                           digests=None if digests is None else np.asarray(digests, dtype=np.uint64)[sub])
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
    cell columns with the unit's keyed id (`_unit`), `codes` their unit numbers; `digests` (instead
    of `rows`) their precomputed row digests.
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
