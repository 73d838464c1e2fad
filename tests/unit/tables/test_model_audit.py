"""The table model's additivity equations and the LP attacker on hand-checked tables."""

from __future__ import annotations

import numpy as np

from release.tables.audit import attack
from release.tables.model import TableShape, build_model, cube_with_margins, global_values


def _table(inner: np.ndarray, name: str = "t", dims: tuple[str, ...] | None = None):
    dims = dims or tuple(f"d{i}" for i in range(inner.ndim))
    shape = TableShape(name, dims, tuple(tuple(f"{d}{j}" for j in range(s)) for d, s in zip(dims, inner.shape, strict=False)))
    model = build_model([shape])
    return model, global_values(model, [cube_with_margins(inner.astype(float))])


def test_margins_add_up_in_three_dimensions() -> None:
    inner = np.arange(24, dtype=float).reshape(2, 3, 4)
    cube = cube_with_margins(inner)
    assert cube[-1, -1, -1] == inner.sum()
    assert np.allclose(cube[:-1, -1, :-1], inner.sum(axis=1))
    model, v = _table(inner)
    assert model.n == 3 * 4 * 5
    # Every additivity row holds for the true table: parts minus total is zero.
    assert np.allclose(model.A @ v, 0)
    # 3-D lines: 4*5 + 3*5 + 3*4 per axis (Total levels included), no duplicates.
    assert model.A.shape[0] == 4 * 5 + 3 * 5 + 3 * 4


def test_unknown_cells_make_their_margins_unknown() -> None:
    inner = np.array([[1.0, np.nan], [3.0, 4.0]])
    cube = cube_with_margins(inner)
    assert np.isnan(cube[0, -1]) and np.isnan(cube[-1, 1]) and np.isnan(cube[-1, -1])
    assert cube[1, -1] == 7 and cube[-1, 0] == 4


def test_tables_sharing_a_margin_share_its_cells() -> None:
    a = TableShape("a", ("g", "r"), (("m", "w"), ("x", "y", "z")))
    b = TableShape("b", ("g", "d"), (("m", "w"), ("p", "q")))
    model = build_model([a, b])
    # 12 + 9 cells, minus the 3 shared gender totals (m, w, grand total).
    assert model.n == 12 + 9 - 3
    ga = model.local[0].reshape(3, 4)[:, -1]
    gb = model.local[1].reshape(3, 3)[:, -1]
    assert list(ga) == list(gb)


def test_one_suppressed_cell_is_recomputed_exactly() -> None:
    model, v = _table(np.array([[2, 10], [7, 9]]))
    pub = v.copy()
    pub[0] = np.nan  # only the cell with 2 suppressed: row total minus the other cell gives it back
    a = attack(model, pub)
    assert a.consistent
    assert a.lower[0] == a.upper[0] == 2
    assert a.smallest_width() == 0


def test_four_cell_cycle_interval() -> None:
    # Suppress the 2x2 block [[2, 10], [7, 9]] inside a table with an extra published column.
    inner = np.array([[2, 10, 5], [7, 9, 6]])
    model, v = _table(inner)
    g = model.local[0].reshape(3, 4)
    pub = v.copy()
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        pub[g[i, j]] = np.nan
    a = attack(model, pub)
    # x00 can go down by 2 (to 0; x11 follows it to 7) and up by min(10, 7) = 7 (x11 to 16).
    assert (a.lower[g[0, 0]], a.upper[g[0, 0]]) == (0, 9)
    assert (a.lower[g[1, 1]], a.upper[g[1, 1]]) == (7, 16)
    assert a.smallest_width() == 9


def test_tampered_value_breaks_additivity() -> None:
    model, v = _table(np.array([[2, 10], [7, 9]]))
    pub = v.copy()
    pub[1] = 11  # published cell edited: its row no longer adds up
    assert not attack(model, pub).consistent
