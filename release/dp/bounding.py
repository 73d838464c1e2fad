"""Contribution bounding: cap the records and cells each privacy unit contributes, unpredictably but fairly."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd


class Scores:
    """Random 64-bit scores ranking a unit's rows: from the OS's secure source, or (test mode) a seeded SHAKE stream.

    Which rows survive then depends neither on input order nor on anything an outsider can
    predict; never a NumPy or stdlib pseudo-random generator.
    """

    def __init__(self, seed: int | None) -> None:
        self._xof = hashlib.shake_256(f"dp-bounding:{seed}".encode()) if seed is not None else None
        self._used = 0

    def draw(self, n: int, dtype: type = np.uint64) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        if n == 0:
            return np.zeros(0, dtype=dtype)
        if self._xof is None:
            raw = os.urandom(width * n)
        else:
            raw = self._xof.digest(self._used + width * n)[self._used:]
            self._used += width * n
        return np.frombuffer(raw, dtype=dtype)


def bounding_key(seed: int | None) -> Scores:
    """Score source for one bounding: fresh OS randomness per run, a seeded stream only in test mode."""
    return Scores(seed)


def unit_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """An int64 id per row naming its privacy unit, and the mask of null units.

    Text ids are reduced to their 64-bit Python hash (SipHash, keyed per process): hashing 4M
    short strings costs a fraction of factorizing them. Two ids with the same hash become one
    unit. That only ever makes bounding stricter (the merged unit keeps at most the bound, so
    each of the two keeps at most the bound too), never looser; at 2**-64 per pair it is also
    vanishingly rare. Integer ids are used as they are (no merging at all).
    """
    if pd.api.types.is_signed_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64, na_value=0), values.isna().to_numpy()
    obj = np.asarray(values.array, dtype=object)  # no copy for pandas' NumPy-backed strings
    ids = np.fromiter(map(hash, obj), dtype=np.int64, count=len(obj))
    # A null hashes like the null markers: only rows with such a hash need the (costly) null test.
    # A null missed here would merge with other nulls into one unit: stricter, never looser.
    maybe = np.flatnonzero(np.isin(ids, [hash(x) for x in (pd.NA, None, np.nan, pd.NaT)]))
    nulls = np.zeros(len(obj), dtype=bool)
    nulls[maybe] = pd.isna(obj[maybe])
    return ids, nulls


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
                        max_records: int, max_groups: int | None, key: Scores,
                        rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of the rows kept so no unit has more than max_records rows in max_groups cells.

    A unit over a bound keeps a uniformly random subset: its distinct cells ranked by a random
    score per (unit, cell), then its rows by a random score per row. A null unit is its own unit
    per row (it cannot be linked to anything else). Only units over a bound draw scores, and only
    rows whose hash bucket is over the bound are factorized into units. `rows` (optional) marks
    the rows that can count at all (inside the key sets); only they take a unit's slots, the
    others are never kept. Statistics: rows_in, rows_kept, units_over_bound, units_truncated.
    """
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=bool), {"rows_in": 0, "rows_kept": 0, "units_over_bound": 0, "units_truncated": 0}
    ids, nulls = unit_ids(frame[unit])
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
        cells = frame[cell_cols].iloc[sub] if cell_bound else None
        kept = _bound_rows(cells, codes, max_records, max_groups, key, count=None if cell_bound else per_unit)
        keep[sub] = kept
        # Without a cell bound every unit here is over the record bound, so each loses rows.
        truncated = (int(np.count_nonzero(np.bincount(codes[~kept], minlength=len(per_unit)))) if cell_bound
                     else int(np.count_nonzero(per_unit > limit)))
    return keep, {"rows_in": int(eligible.sum()), "rows_kept": int(keep.sum()),
                  "units_over_bound": int(np.count_nonzero(per_unit > limit)), "units_truncated": truncated}


def _bound_rows(cells: pd.DataFrame | None, codes: np.ndarray, max_records: int, max_groups: int | None,
                key: Scores, count: np.ndarray | None = None) -> np.ndarray:
    """Rows kept among the rows of units over a bound (`count`: rows per unit, when no cell bound applies)."""
    n = len(codes)
    keep = np.ones(n, dtype=bool)
    if cells is not None and max_groups is not None:
        pair = cells.assign(_u=codes).groupby(["_u", *cells.columns], sort=False, observed=True,
                                              dropna=False).ngroup().to_numpy()
        # One score per (unit, cell): rank the distinct cells of each unit, keep the first max_groups.
        npairs = int(pair.max()) + 1
        first = np.unique(pair, return_index=True)[1]
        rank_of_pair = np.empty(npairs, dtype=np.int64)
        rank_of_pair[pair[first]] = _rank_within(codes[first], key.draw(len(first)))
        keep &= rank_of_pair[pair] < max_groups
    # The record bound, among the rows the cell bound left: only units still over it draw scores.
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
    # A unit keeps its max_records rows of least score, the score being a 32-bit coarse part
    # then a 64-bit fine part (both uniform, so the order is a uniformly random one). Those rows
    # always lie among its rows whose coarse part is under a per-unit cut that about `slots`
    # rows pass, so only those rows draw a fine part and are sorted (a unit with 500k rows sorts
    # ~slots). A unit with fewer than max_records rows under its cut sorts all its rows: the
    # selection stays exactly "max_records of least score", uniform over subsets.
    coarse = key.draw(len(idx), np.uint32)
    slots = 2 * max_records + 16
    full = np.uint32(np.iinfo(np.uint32).max)
    frac = slots / np.maximum(count, 1)  # once per unit, not per row
    cut_unit = np.where(frac >= 1, full, (np.minimum(frac, 0.5) * 2.0**32).astype(np.uint32))
    cand = coarse <= cut_unit[u]
    short = np.bincount(u[cand], minlength=len(count)) < max_records
    short &= cut_unit != full
    if short.any():  # rare: too few rows under the cut, so the unit sorts all its rows
        cand |= short[u]
    ci = np.flatnonzero(cand)
    score = (coarse[ci].astype(np.uint64) << np.uint64(32)) | (key.draw(len(ci)) >> np.uint64(32))
    keep[idx] = False
    keep[idx[ci[_least_within(u[ci], score, max_records)]]] = True
    return keep
