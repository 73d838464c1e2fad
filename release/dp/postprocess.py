"""Post-processing of noisy tables: margin consistency by least squares, non-negative integers, suppression.

Post-processing never looks at true values, so it costs no privacy budget.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg


def _other_axes(ndim: int, keep: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a for a in range(ndim) if a not in keep)


def margin_of(cells: np.ndarray, shape: tuple[int, ...], keep: tuple[int, ...]) -> np.ndarray:
    """Sum of the grid's cells over every axis not kept (row-major flattened)."""
    return cells.reshape(shape).sum(axis=_other_axes(len(shape), keep)).ravel()


def _spread(z: np.ndarray, shape: tuple[int, ...], keep: tuple[int, ...]) -> np.ndarray:
    kshape = tuple(shape[a] if a in keep else 1 for a in range(len(shape)))
    return np.broadcast_to(z.reshape(kshape), shape).ravel()


def least_squares(cells: np.ndarray, shape: tuple[int, ...], margins: list[tuple[tuple[int, ...], np.ndarray]]) -> np.ndarray:
    """Cell values closest (least squares) to the noisy cells and noisy margins at once.

    All parts carry noise of the same scale, so ordinary least squares is the best linear
    unbiased estimate: (I + sum A'A) x = y + sum A'z, solved by conjugate gradients.
    """
    y = cells.astype(float)
    if not margins:
        return y
    n = y.size
    rhs = y.copy()
    for keep, z in margins:
        rhs += _spread(z.astype(float), shape, keep)

    def matvec(x: np.ndarray) -> np.ndarray:
        out = x.astype(float).copy()
        for keep, _ in margins:
            out += _spread(margin_of(x, shape, keep), shape, keep)
        return out

    op = LinearOperator((n, n), matvec=matvec, dtype=float)
    x, info = cg(op, rhs, rtol=1e-12, atol=0.0, maxiter=10 * n + 100)
    if info != 0:  # pragma: no cover - the system is SPD with eigenvalues in [1, 1 + sum of sizes]
        raise ArithmeticError("least-squares consistency did not converge")
    return x


def round_within_groups(x: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Non-negative integers: clip at 0, then round so each group's total is its rounded estimated total.

    Largest-remainder rounding within each group (the cells of one margin entry), so the published
    margins, recomputed from the published cells, stay as close as possible to the estimate.
    """
    x = np.clip(x, 0.0, None)
    if groups is None:
        return np.rint(x).astype(np.int64)
    f = np.floor(x)
    r = x - f
    ng = int(groups.max(initial=-1)) + 1
    target = np.rint(np.bincount(groups, weights=x, minlength=ng))
    deficit = (target - np.bincount(groups, weights=f, minlength=ng)).astype(np.int64)
    order = np.lexsort((-r, groups))
    sg = groups[order]
    starts = np.r_[0, np.flatnonzero(sg[1:] != sg[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - run_start
    return (f + (rank < deficit[groups])).astype(np.int64)


def group_index(shape: tuple[int, ...], keep: tuple[int, ...]) -> np.ndarray:
    """For each cell (row-major), the flat index of its entry in the margin over `keep`."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    coords = np.unravel_index(idx.ravel(), shape)
    flat = np.zeros(idx.size, dtype=np.int64)
    for a in keep:
        flat = flat * shape[a] + coords[a]
    return flat


def suppress(values: np.ndarray, below: int | None) -> np.ndarray:
    """Mask of cells to blank: those whose *noisy, post-processed* value is under the threshold."""
    if below is None:
        return np.zeros(len(values), dtype=bool)
    return values < below
