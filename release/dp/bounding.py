"""Contribution bounding: cap the records and cells each privacy unit contributes, unpredictably but fairly."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd


class Scores:
    """Random 64-bit scores ranking a unit's rows: from the OS's secure source, or (test mode) a seeded SHAKE stream.

    Which rows survive then depends neither on input order nor on anything an outsider can
    predict; never numpy.random or random.
    """

    def __init__(self, seed: int | None) -> None:
        self._xof = hashlib.shake_256(f"dp-bounding:{seed}".encode()) if seed is not None else None
        self._used = 0

    def draw(self, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.uint64)
        if self._xof is None:
            raw = os.urandom(8 * n)
        else:
            raw = self._xof.digest(8 * (self._used + n))[8 * self._used:]
            self._used += n
        return np.frombuffer(raw, dtype=np.uint64).copy()


def bounding_key(seed: int | None) -> Scores:
    """Score source for one bounding: fresh OS randomness per run, a seeded stream only in test mode."""
    return Scores(seed)


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


def bound_contributions(frame: pd.DataFrame, unit: str, record_id: str | None, cell_cols: list[str],
                        max_records: int, max_groups: int | None, key: Scores,
                        rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of the rows kept so no unit has more than max_records rows in max_groups cells.

    A unit over a bound keeps a uniformly random subset: its distinct cells ranked by a random
    score per (unit, cell), then its rows by a random score per row. A null unit is its own unit
    per row (it cannot be linked to anything else). Only units over a bound draw scores, so the
    common case costs one factorize. `rows` (optional) marks the rows that can count at all
    (inside the key sets); only they take a unit's slots, the others are never kept.
    """
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=bool), {"rows_in": 0, "rows_kept": 0, "units": 0, "units_truncated": 0}
    codes, _ = pd.factorize(frame[unit], use_na_sentinel=True)
    codes = codes.astype(np.int64)
    nulls = codes < 0
    if nulls.any():
        codes[nulls] = codes.max(initial=-1) + 1 + np.arange(int(nulls.sum()))
    eligible = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    per_unit = np.bincount(codes[eligible], minlength=int(codes.max()) + 1)
    limit = min(max_records, max_groups if max_groups is not None and cell_cols else max_records)
    sub = np.flatnonzero(eligible & (per_unit[codes] > limit))
    keep = eligible.copy()
    if len(sub):
        cells = frame[cell_cols].iloc[sub] if (max_groups is not None and cell_cols) else None
        keep[sub] = _bound_rows(cells, codes[sub], max_records, max_groups, key)
    return keep, {"rows_in": int(eligible.sum()), "rows_kept": int(keep.sum()), "units": int((per_unit > 0).sum()),
                  "units_truncated": int((np.bincount(codes[eligible & ~keep], minlength=len(per_unit)) > 0).sum())}


def _bound_rows(cells: pd.DataFrame | None, codes: np.ndarray, max_records: int, max_groups: int | None,
                key: Scores) -> np.ndarray:
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
    score = key.draw(n)
    # Rows already dropped by the cell bound sort last so they never take a record slot.
    score[~keep] = np.iinfo(np.uint64).max
    keep &= _rank_within(codes, score) < max_records
    return keep
