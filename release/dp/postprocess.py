"""Post-processing of noisy tables: margin consistency by least squares, non-negative integers, suppression.

Post-processing never looks at true values, so it costs no privacy budget.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

PostProcessing = Literal["none", "nonnegative", "consistent"]
"""none: the noisy values as drawn (unbiased, may be negative, margins not equal to their cells' sums);
nonnegative: clipped at zero (biased upward on small cells); consistent: least squares with the
margins, clipped, rounded so the margins are the sums of the published cells."""

_DENSE = 600
"Tables up to this many cells solve the least squares directly (one cached factorization)."


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

    if n <= _DENSE:
        # Small tables: the normal matrix is tiny; its inverse is cached per table shape and margins.
        return _normal_inverse(shape, tuple(keep for keep, _ in margins)) @ rhs
    op = LinearOperator((n, n), matvec=matvec, dtype=float)
    x, info = cg(op, rhs, rtol=1e-12, atol=0.0, maxiter=10 * n + 100)
    if info != 0:  # pragma: no cover - the system is SPD with eigenvalues in [1, 1 + sum of sizes]
        raise ArithmeticError("least-squares consistency did not converge")
    return x


@lru_cache(maxsize=64)
def _normal_inverse(shape: tuple[int, ...], keeps: tuple[tuple[int, ...], ...]) -> np.ndarray:
    n = int(np.prod(shape))
    eye = np.eye(n)
    m = eye.copy()
    for keep in keeps:
        m += np.stack([_spread(margin_of(eye[i], shape, keep), shape, keep) for i in range(n)], axis=1)
    return np.linalg.inv(m)


def post_process(noisy_cells: np.ndarray, shape: tuple[int, ...], noisy_margins: list[tuple[tuple[int, ...],
                 np.ndarray]], choice: PostProcessing, clip: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """Published cells and margins from the noisy ones (integers; looks at noisy values only).

    `clip` says whether the statistic can be negative at all (counts, sums with a lower bound >= 0):
    only then do `nonnegative` and `consistent` clip at zero.
    """
    if choice == "none":
        return noisy_cells.astype(np.int64), [z.astype(np.int64) for _, z in noisy_margins]
    if choice == "nonnegative":
        f = (lambda v: np.clip(v, 0, None)) if clip else (lambda v: v)
        return f(noisy_cells).astype(np.int64), [f(z).astype(np.int64) for _, z in noisy_margins]
    est = least_squares(noisy_cells.astype(float), shape, noisy_margins)
    groups = group_index(shape, noisy_margins[0][0]) if noisy_margins else None
    cells = round_within_groups(est, groups) if clip else np.rint(est).astype(np.int64)
    return cells, [margin_of(cells, shape, ax) for ax, _ in noisy_margins]


def round_within_groups(x: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Non-negative integers whose group totals are the rounded estimated totals (clipped at 0).

    Largest-remainder rounding within each group (the cells of one margin entry), so the published
    margins, recomputed from the published cells, stay as close as possible to the estimate.
    """
    if groups is None:
        return np.rint(np.clip(x, 0.0, None)).astype(np.int64)
    ng = int(groups.max(initial=-1)) + 1
    # Each entry's total keeps its least-squares estimate (clipped at 0 only as a whole): clipping the
    # cells first would push every total of small cells upward (a bias the margin's interval does not
    # cover). The clipped cells are scaled down within their entry to give that total back.
    target = np.rint(np.clip(np.bincount(groups, weights=x, minlength=ng), 0.0, None))
    x = np.clip(x, 0.0, None)
    got = np.bincount(groups, weights=x, minlength=ng)
    ratio = np.divide(target, got, out=np.ones(ng), where=got > target)
    x = x * np.minimum(ratio, 1.0)[groups]
    f = np.floor(x)
    r = x - f
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
