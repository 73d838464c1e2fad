"""The linear structure of tables with margins: cells, keys and the additivity equations."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import scipy.sparse as sp

TOTAL = "Total"


@dataclass(frozen=True)
class TableShape:
    """One table: its dimensions and the ordered levels of each (margins add a Total level)."""

    name: str
    dims: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the cube including one Total level per dimension."""
        return tuple(len(lv) + 1 for lv in self.levels)

    def cell_keys(self, total: str = TOTAL) -> list[tuple[str, ...]]:
        """Every cell's dimension values in C order of the cube (Total last on each axis)."""
        return list(product(*[(*lv, total) for lv in self.levels]))


@dataclass
class TableModel:
    """Cells of one or more tables protected together, and the equations an attacker knows.

    A cell is identified by its non-Total coordinates, so the same margin in two tables
    (the gender totals of gender × race and gender × division) is one variable: tables
    sharing margins are audited and protected jointly.
    """

    tables: list[TableShape]
    keys: list[tuple[tuple[str, str], ...]]
    "Global cell key: sorted (dimension, value) pairs of its non-Total coordinates."
    local: list[np.ndarray]
    "Per table: global index of every cube cell (C order)."
    A: sp.csr_matrix
    "Additivity: one row per line (parts - total = 0)."
    interior: np.ndarray
    "True for cells with no Total coordinate in their table (not a margin)."
    n_parts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    "Number of interior cells each cell sums (1 for interior cells)."

    @property
    def n(self) -> int:
        return len(self.keys)

    def key_dict(self, j: int) -> dict[str, str]:
        return dict(self.keys[j])


def build_model(tables: list[TableShape]) -> TableModel:
    """The joint model: cells keyed across tables, additivity rows for every line of every table."""
    index: dict[tuple[tuple[str, str], ...], int] = {}
    keys: list[tuple[tuple[str, str], ...]] = []
    local: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    interior_flags: dict[int, bool] = {}
    parts_count: dict[int, int] = {}
    r0 = 0
    for t in tables:
        shape = t.shape
        g = np.empty(int(np.prod(shape)), dtype=np.int64)
        for i, coords in enumerate(product(*[range(s) for s in shape])):
            key = tuple(sorted((d, t.levels[k][c]) for k, (d, c) in enumerate(zip(t.dims, coords, strict=True))
                               if c < shape[k] - 1))
            j = index.get(key)
            if j is None:
                j = index[key] = len(keys)
                keys.append(key)
            g[i] = j
            inner = all(c < shape[k] - 1 for k, c in enumerate(coords))
            interior_flags[j] = interior_flags.get(j, False) or inner
            np_ = int(np.prod([shape[k] - 1 if c == shape[k] - 1 else 1 for k, c in enumerate(coords)]))
            parts_count[j] = max(parts_count.get(j, 1), np_)
        local.append(g)
        cube = g.reshape(shape)
        for ax in range(len(shape)):
            moved = np.moveaxis(cube, ax, -1).reshape(-1, shape[ax])
            parts, totals = moved[:, :-1], moved[:, -1]
            m = len(moved)
            rr = np.arange(r0, r0 + m)
            rows += [np.repeat(rr, parts.shape[1]), rr]
            cols += [parts.ravel(), totals]
            vals += [np.ones(parts.size), -np.ones(m)]
            r0 += m
    n = len(keys)
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r0, n))
    # Two tables sharing a margin repeat its lines; one copy is enough.
    A = _unique_rows(A)
    interior = np.array([interior_flags[j] for j in range(n)], dtype=bool)
    n_parts = np.array([parts_count[j] for j in range(n)], dtype=float)
    return TableModel(tables=tables, keys=keys, local=local, A=A, interior=interior, n_parts=n_parts)


def _unique_rows(A: sp.csr_matrix) -> sp.csr_matrix:
    A = A.tocsr()
    A.sort_indices()
    seen: dict[bytes, int] = {}
    keep = []
    for i in range(A.shape[0]):
        s, e = A.indptr[i], A.indptr[i + 1]
        sig = A.indices[s:e].tobytes() + A.data[s:e].tobytes()
        if sig not in seen:
            seen[sig] = i
            keep.append(i)
    return A[keep] if len(keep) < A.shape[0] else A


def cube_with_margins(interior: np.ndarray) -> np.ndarray:
    """Add a Total slot on every axis and fill all margins (NaN parts make NaN totals)."""
    shape = tuple(s + 1 for s in interior.shape)
    cube = np.zeros(shape, dtype=float)
    cube[tuple(slice(0, -1) for _ in shape)] = interior
    for ax in range(len(shape)):
        sl_total: list[slice | int] = [slice(None)] * len(shape)
        sl_parts = [slice(None)] * len(shape)
        sl_total[ax] = -1
        sl_parts[ax] = slice(0, -1)
        cube[tuple(sl_total)] = cube[tuple(sl_parts)].sum(axis=ax)
    return cube


def global_values(model: TableModel, cubes: list[np.ndarray]) -> np.ndarray:
    """Values of the global cells from each table's cube (shared margins must agree)."""
    v = np.full(model.n, np.nan)
    seen = np.zeros(model.n, dtype=bool)
    for g, cube in zip(model.local, cubes, strict=True):
        flat = cube.ravel()
        clash = seen[g] & ~(np.isclose(v[g], flat) | (np.isnan(v[g]) & np.isnan(flat)))
        if clash.any():
            raise ValueError("tables disagree on a shared margin")
        v[g] = flat
        seen[g] = True
    return v


def lines_through(model: TableModel) -> sp.csc_matrix:
    """Column-wise view of the additivity rows: the lines each cell lies on."""
    return model.A.tocsc()


def describe_key(key: tuple[tuple[str, str], ...], dims: tuple[str, ...], total: str = TOTAL) -> dict[str, Any]:
    d = dict(key)
    return {dim: d.get(dim, total) for dim in dims}
