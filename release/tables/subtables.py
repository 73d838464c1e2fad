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


HELP_WEIGHT = 0.01
"A hypercube corner that is another cell still short counts as this many cells saved."


HYPERCUBE_GRID = 200_000
"Most hypercubes scored per cell; beyond it each axis keeps its most promising levels."


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

    def hypercube(self, p: int, up: float, down: float, suppressed: np.ndarray, cost: np.ndarray,
                  room: np.ndarray, pending: np.ndarray | None = None, joint_ok: bool = False
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """The cheapest hypercube through p moving it up by `up` and down by `down`.

        A hypercube picks one other level per axis of p's own table; its 2^D corners get
        alternating signs (+ at p; the sign flips between two part levels and stays between a
        part and the Total), so every line through a corner holds two corners that cancel:
        a perturbation of the table, as in sdcTable's HYPERCUBE method. Moving p up by `up`
        moves the opposite-sign corners down by as much (their room must allow it); moving
        it down moves p and its same-sign corners down. All candidates are scored at once
        (broadcast over every choice of levels): the cost of the corners not yet suppressed,
        then their total value. Returns (cells, signs) or None when no hypercube fits.
        Cells shared with another table never move (unless `joint_ok`).
        """
        ti = next(ti for ti, o in enumerate(self._outside) if np.all(self.coords[p, o] == self.nlev[o]))
        axes = self.axes[ti]
        cube = self.cubes[ti]
        D = len(axes)
        c = self.coords[p, axes]
        shape = cube.shape
        others = [np.array([lv for lv in range(shape[d]) if lv != c[d]], dtype=np.int64) for d in range(D)]
        if int(np.prod([len(o) for o in others])) > HYPERCUBE_GRID:
            # Large 4-D+ tables: score only the most promising levels per axis (as sub-tables do).
            keep = self.levels(p, suppressed, cost, room, axes, max(2, int(HYPERCUBE_GRID ** (1 / D))))
            others = [np.intersect1d(others[d], keep[d]) for d in range(D)]
        # flip[d][o]: moving from p's level to level o on axis d flips the sign (two part levels).
        flip = [((c[d] != shape[d] - 1) & (others[d] != shape[d] - 1)).astype(np.int64) for d in range(D)]
        grid = tuple(len(o) for o in others)
        total = np.zeros(grid)
        value = np.zeros(grid)
        helps = np.zeros(grid)
        ok_up = np.ones(grid, dtype=bool)
        ok_dn = np.ones(grid, dtype=bool)
        corners = []
        for mask in range(1, 2 ** D):
            sub = [d for d in range(D) if mask >> d & 1]
            idx = tuple(others[d] if mask >> d & 1 else np.array([c[d]]) for d in range(D))
            ids = cube[np.ix_(*idx)]
            parity = np.zeros([len(i) for i in idx], dtype=np.int64)
            for d in sub:
                sh = [1] * D
                sh[d] = -1
                parity = parity + flip[d].reshape(sh)
            neg = (parity % 2) == 1
            sup = suppressed[ids]
            movable = np.ones(ids.shape, dtype=bool) if joint_ok else ~self.shared[ids]
            r = room[ids]
            # Opposite-sign corners go down when p goes up; same-sign corners when p goes down.
            ok_up &= movable & (~neg | (r >= up - 1e-9))
            ok_dn &= movable & (neg | (r >= down - 1e-9))
            total = total + np.where(sup, 0.0, cost[ids])
            value = value + np.where(sup, 0.0, room[ids])
            if pending is not None:
                helps = helps + pending[ids]
            corners.append((sub, idx))
        ok = ok_up & ok_dn
        if room[p] < down - 1e-9 or (self.shared[p] and not joint_ok) or not ok.any():
            return None
        score = np.where(ok, total - HELP_WEIGHT * helps, np.inf)
        best = np.flatnonzero(score.ravel() == score.min())
        pick = best[np.argmin(value.ravel()[best])]
        o = np.unravel_index(pick, grid)
        lv = [others[d][o[d]] for d in range(D)]
        cells = [p]
        signs = [1.0]
        for mask in range(1, 2 ** D):
            co = [lv[d] if mask >> d & 1 else c[d] for d in range(D)]
            par = sum(int(flip[d][o[d]]) for d in range(D) if mask >> d & 1)
            cells.append(int(cube[tuple(co)]))
            signs.append(-1.0 if par % 2 else 1.0)
        return np.array(cells, dtype=np.int64), np.array(signs)
