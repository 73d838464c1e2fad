"""Contribution bounding: cap the records and cells each privacy unit contributes, unpredictably but fairly."""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pandas as pd


def bounding_key(seed: int | None) -> str:
    """16-character SipHash key: fresh from the OS per run, derived from the seed only in test mode."""
    if seed is None:
        return secrets.token_hex(8)
    return hashlib.sha256(f"dp-bounding:{seed}".encode()).hexdigest()[:16]


def _keyed_hash(values: pd.Series, key: str) -> np.ndarray:
    # SipHash under a secret per-run key: which rows survive depends neither on input order nor
    # on anything an outsider can predict, yet is reproducible within a run.
    return pd.util.hash_pandas_object(values.astype(str), index=False, hash_key=key).to_numpy()


def _rank_within(unit_codes: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank of each row among the rows of its unit, by score (0 = first kept)."""
    order = np.lexsort((score, unit_codes))
    sorted_units = unit_codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_units[1:] != sorted_units[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - run_start
    return rank


def bound_contributions(frame: pd.DataFrame, unit: str, record_id: str, cell_cols: list[str],
                        max_records: int, max_groups: int | None, key: str) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of the rows kept so no unit has more than max_records rows in max_groups cells.

    Rows of a unit are ranked by a keyed hash of their record id; cells by a keyed hash of the
    (unit, cell) pair. A null unit is its own unit per row (it cannot be linked to anything else).
    Only the rows of units over a bound are hashed, so the common case costs one factorize.
    """
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=bool), {"rows_in": 0, "rows_kept": 0, "units": 0, "units_truncated": 0}
    codes, _ = pd.factorize(frame[unit], use_na_sentinel=True)
    codes = codes.astype(np.int64)
    nulls = codes < 0
    if nulls.any():
        codes[nulls] = codes.max(initial=-1) + 1 + np.arange(int(nulls.sum()))
    per_unit = np.bincount(codes)
    limit = min(max_records, max_groups if max_groups is not None and cell_cols else max_records)
    sub = np.flatnonzero(per_unit[codes] > limit)
    keep = np.ones(n, dtype=bool)
    if len(sub):
        part = frame.iloc[sub]
        keep[sub] = _bound_rows(part, codes[sub], unit, record_id, cell_cols, max_records, max_groups, key)
    return keep, {"rows_in": int(n), "rows_kept": int(keep.sum()), "units": int(len(per_unit)),
                  "units_truncated": int(len(np.unique(codes[~keep])))}


def _bound_rows(frame: pd.DataFrame, codes: np.ndarray, unit_col: str, record_id: str, cell_cols: list[str],
                max_records: int, max_groups: int | None, key: str) -> np.ndarray:
    n = len(frame)
    keep = np.ones(n, dtype=bool)
    if max_groups is not None and cell_cols:
        # Hash the (unit, cell) values themselves, not codes that depend on the input order.
        text = frame[unit_col].astype(str)
        for c in cell_cols:
            text = text + "\x1f" + frame[c].astype(str)
        pair_codes, uniq = pd.factorize(text)
        idx = np.unique(pair_codes, return_index=True)[1]
        # One score per (unit, cell): rank the distinct cells of each unit, keep the first max_groups.
        ph = _keyed_hash(pd.Series(uniq[pair_codes[idx]]), key)
        rank_of_pair = np.empty(len(uniq), dtype=np.int64)
        rank_of_pair[pair_codes[idx]] = _rank_within(codes[idx], ph)
        keep &= rank_of_pair[pair_codes] < max_groups
    rh = _keyed_hash(frame[record_id], key)
    # Rows already dropped by the cell bound sort last so they never take a record slot.
    score = np.where(keep, rh, np.iinfo(np.uint64).max).astype(np.uint64)
    keep &= _rank_within(codes, score) < max_records
    return keep
