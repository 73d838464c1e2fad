"""Sub-tables around a cell across one or more linked tables: where the fast path searches perturbations."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from release.tables.model import TableModel


def cube_lines(shape: tuple[int, ...]) -> sp.csr_matrix:
    """Additivity rows of one cube (last level of each axis is its Total), local C-order indices."""
    cube = np.arange(int(np.prod(shape))).reshape(shape)
    rows, cols, vals = [], [], []
    r0 = 0
    for ax in range(len(shape)):
        moved = np.moveaxis(cube, ax, -1).reshape(-1, shape[ax])
        m = len(moved)
        rr = np.arange(r0, r0 + m)
        rows += [np.repeat(rr, shape[ax] - 1), rr]
        cols += [moved[:, :-1].ravel(), moved[:, -1]]
        vals += [np.ones(m * (shape[ax] - 1)), -np.ones(m)]
        r0 += m
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(r0, cube.size))


class SubTables:
    """Chooses, for a cell, a few levels per dimension (its own, the Total and the most
    promising others) and builds the equations of every table restricted to them.

    A sub-table keeps its Total level on every axis, so its lines are the table's lines
    restricted to the chosen parts; a perturbation of the sub-tables that adds up in each
    (zero elsewhere) adds up in the whole model: tables sharing a margin are chosen on the
    same levels of their shared dimensions, so the shared cells satisfy both tables' lines.
    """

    def __init__(self, model: TableModel, k: int) -> None:
        self.model = model
        self.k = k
        dims: list[str] = []
        nlev: dict[str, int] = {}
        for t in model.tables:
            for d, lv in zip(t.dims, t.levels, strict=True):
                if d not in nlev:
                    dims.append(d)
                    nlev[d] = len(lv)
        self.dims = dims
        self.nlev = np.array([nlev[d] for d in dims], dtype=np.int64)
        D = len(dims)
        # Global coordinates: a cell's level per dimension, Total (= nlev) where it has none.
        co = np.tile(self.nlev, (model.n, 1))
        self.tables_of = np.zeros(model.n, dtype=np.int64)
        self.cubes: list[np.ndarray] = []
        self.axes: list[list[int]] = []
        for t, g in zip(model.tables, model.local, strict=True):
            ax = [dims.index(d) for d in t.dims]
            cube = g.reshape(t.shape)
            idx = np.unravel_index(np.arange(g.size), t.shape)
            for a, i in zip(ax, idx, strict=True):
                co[g, a] = i
            self.cubes.append(cube)
            self.axes.append(ax)
            self.tables_of[np.unique(g)] += 1
        self.coords = co
        self._outside = [np.setdiff1d(np.arange(D), ax) for ax in self.axes]
        self.shared = self.tables_of > 1
        "Cells in more than one table (shared margins)."
        radix = self.nlev + 1
        self._radix = radix
        flat = np.ravel_multi_index(tuple(co.T), tuple(radix)) if D else np.zeros(model.n, dtype=np.int64)
        self._order = np.argsort(flat)
        self._flat = flat[self._order]
        # Suppressed cells per level of each dimension (kept current by `suppress`).
        self.slab = [np.zeros(int(s) + 1) for s in self.nlev]
        self._lines: dict[tuple[int, ...], sp.csr_matrix] = {}

    def start(self, suppressed: np.ndarray) -> None:
        for a in range(len(self.dims)):
            self.slab[a] = np.bincount(self.coords[suppressed, a], minlength=int(self.nlev[a]) + 1).astype(float)

    def suppress(self, cells: np.ndarray) -> None:
        for a in range(len(self.dims)):
            np.add.at(self.slab[a], self.coords[cells, a], 1.0)

    def lookup(self, co: np.ndarray) -> np.ndarray:
        """Global ids of cells by coordinates (rows of co); -1 where no table holds such a cell."""
        f = np.ravel_multi_index(tuple(co.T), tuple(self._radix))
        pos = np.searchsorted(self._flat, f)
        pos = np.minimum(pos, len(self._flat) - 1)
        hit = self._flat[pos] == f
        return np.where(hit, self._order[pos], -1)

    def levels(self, p: int, suppressed: np.ndarray, cost: np.ndarray, a: np.ndarray,
               dims: list[int], k: int | None = None) -> list[np.ndarray]:
        """Chosen levels per dimension in `dims`: p's own, the Total and up to k others."""
        c = self.coords[p]
        picks = []
        for ax in dims:
            size = int(self.nlev[ax])
            others = np.arange(size)
            others = others[others != c[ax]]
            co = np.tile(c, (len(others), 1))
            co[:, ax] = others
            nb = self.lookup(co)
            ok = nb >= 0
            nbs = np.where(ok, nb, 0)
            sup = ok & suppressed[nbs]
            # Already suppressed neighbours first (free), then levels with many suppressed
            # cells, then the cheapest, then the largest (most room to move); deterministic.
            order = np.lexsort((-np.where(ok, a[nbs], 0), np.where(ok, cost[nbs], np.inf), -self.slab[ax][others], ~sup))
            chosen = set(others[order[: (self.k if k is None else k)]].tolist()) | {int(c[ax]), size}
            picks.append(np.array(sorted(chosen), dtype=np.int64))
        return picks

    def build(self, p: int, suppressed: np.ndarray, cost: np.ndarray, a: np.ndarray, joint: bool,
              k: int | None = None) -> tuple[np.ndarray, sp.csr_matrix, tuple | None]:
        """Cells and equations of the sub-tables around p: p's own table(s) only, or (joint)
        every table that can meet them through a shared margin."""
        own = [ti for ti, o in enumerate(self._outside) if np.all(self.coords[p, o] == self.nlev[o])]
        ts = list(range(len(self.axes))) if joint else own[:1]
        dims = sorted({d for ti in ts for d in self.axes[ti]})
        picks = dict(zip(dims, self.levels(p, suppressed, cost, a, dims, k), strict=True))
        ids_all, rows_all, cols_all, vals_all = [], [], [], []
        r0 = 0
        for ti in ts:
            ax = self.axes[ti]
            sub = self.cubes[ti][np.ix_(*[picks[d] for d in ax])]
            shape = sub.shape
            L = self._cube_lines(shape)
            Lc = L.tocoo()
            ids = sub.ravel()
            ids_all.append(ids)
            rows_all.append(Lc.row + r0)
            cols_all.append(ids[Lc.col])
            vals_all.append(Lc.data)
            r0 += L.shape[0]
        if len(ts) == 1:
            # One cube: its equations are those of any sub-table of this shape (cached).
            return ids_all[0], self._cube_lines(shape), (ts[0], shape)
        cells, inv = np.unique(np.concatenate(cols_all), return_inverse=True)
        M = sp.csr_matrix((np.concatenate(vals_all), (np.concatenate(rows_all), inv)), shape=(r0, len(cells)))
        return cells, M, None

    def _cube_lines(self, shape: tuple[int, ...]) -> sp.csr_matrix:
        if shape not in self._lines:
            self._lines[shape] = cube_lines(shape)
        return self._lines[shape]
