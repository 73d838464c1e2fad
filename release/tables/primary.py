"""Primary suppression rules: the threshold rule on counts, dominance (n,k) and p% on magnitudes."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd


@dataclass
class Contributions:
    """Per cube cell (margins included): contributor count, total, the n largest contributions."""

    n_contributors: np.ndarray
    total: np.ndarray
    top: np.ndarray
    "shape (*cube, n_top): largest contributions first, zero-padded"


def threshold_rule(values: np.ndarray, threshold: int, protect_zeros: bool) -> np.ndarray:
    """Cells whose (known) count is below the threshold; zeros only when they are protected."""
    v = np.asarray(values, dtype=float)
    known = ~np.isnan(v)
    small = known & (v < threshold)
    return small if protect_zeros else small & (v > 0)


def contributions(codes: np.ndarray, shape: tuple[int, ...], contributor: np.ndarray, value: np.ndarray,
                  n_top: int) -> Contributions:
    """Contribution statistics for every cell of a cube with margins, from record-level data.

    codes: (rows, dims) level index per record; contributor: one id per record (records of
    one contributor in a cell are added up first, so one person with many rows counts once).
    """
    d = len(shape)
    n_c = np.zeros(shape)
    tot = np.zeros(shape)
    top = np.zeros((*shape, n_top))
    base = pd.DataFrame({f"d{i}": codes[:, i] for i in range(d)})
    base["who"] = pd.factorize(contributor)[0]
    base["v"] = value
    for r in range(d + 1):
        for kept in combinations(range(d), r):
            cols = [f"d{i}" for i in kept]
            per = base.groupby([*cols, "who"], sort=False)["v"].sum().reset_index()
            per = per.sort_values([*cols, "v"], ascending=[True] * len(cols) + [False], kind="mergesort")
            if cols:
                rank = per.groupby(cols, sort=False).cumcount().to_numpy()
                g = per.groupby(cols, sort=False)
                agg = g["v"].agg(["sum", "size"]).reset_index()
            else:
                rank = np.arange(len(per))
                agg = pd.DataFrame({"sum": [per["v"].sum()], "size": [len(per)]})
            idx_cells = tuple(agg[f"d{i}"].to_numpy() if i in kept else np.full(len(agg), shape[i] - 1)
                              for i in range(d))
            n_c[idx_cells] = agg["size"].to_numpy()
            tot[idx_cells] = agg["sum"].to_numpy()
            sel = rank < n_top
            idx_top = tuple(per[f"d{i}"].to_numpy()[sel] if i in kept else np.full(int(sel.sum()), shape[i] - 1)
                            for i in range(d))
            top[(*idx_top, rank[sel])] = per["v"].to_numpy()[sel]
    return Contributions(n_c, tot, top)


def dominance_rule(c: Contributions, n: int, k: float) -> np.ndarray:
    """(n,k) rule: the n largest contributions make up more than k% of the cell total."""
    share = c.top[..., :n].sum(axis=-1)
    return (c.total > 0) & (share > k / 100.0 * c.total)


def p_percent_rule(c: Contributions, p: float) -> np.ndarray:
    """p% rule: the second-largest contributor can estimate the largest within p% of its value."""
    x1 = c.top[..., 0]
    x2 = c.top[..., 1] if c.top.shape[-1] > 1 else np.zeros_like(x1)
    rest = c.total - x1 - x2
    return (c.total > 0) & (rest < p / 100.0 * x1)
