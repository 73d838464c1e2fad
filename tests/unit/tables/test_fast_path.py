"""The fast path and the decomposed audit against the whole-table LP (issue 19's acceptance)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import release.tables.audit as audit_mod
from release.tables.audit import attack, attack_whole
from release.tables.model import TableShape, build_model, cube_with_margins, global_values
from release.tables.primary import threshold_rule
from release.tables.secondary import protect_fast, protect_lp, required_widths
from release.tables.subtables import SubTables
from tests.unit.tables.helpers import _cells, _model

THRESHOLD = 5


def _fast_passes_whole_audit(model, v, absolute: float, relative: float) -> None:
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    prot = protect_fast(model, v, primary, absolute=absolute, relative=relative)
    assert prot.suppressed[primary].all() and len(prot.failing) == 0
    published = np.where(prot.suppressed, np.nan, v)
    whole = attack_whole(model, published)
    assert whole.consistent
    need = required_widths(model, v, primary, absolute, relative, integer=True)
    assert np.all(whole.width[primary] >= need[primary] - 1e-9), (whole.width[primary], need[primary])
    assert np.all(whole.width[prot.suppressed] >= absolute - 1e-9)
    # The protection's own (decomposed) audit is the whole-table LP's, cell for cell.
    assert np.array_equal(prot.audit.lower, whole.lower) and np.array_equal(prot.audit.upper, whole.upper)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 8), st.integers(2, 7)).flatmap(_cells),
       absolute=st.sampled_from([1.0, 5.0, 8.0]), relative=st.sampled_from([0.0, 0.5]))
def test_fast_path_passes_whole_table_audit_2d(inner: np.ndarray, absolute: float, relative: float) -> None:
    _fast_passes_whole_audit(*_model(inner), absolute, relative)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 5), st.integers(2, 4), st.integers(2, 4)).flatmap(_cells),
       absolute=st.sampled_from([1.0, 5.0]))
def test_fast_path_passes_whole_table_audit_3d(inner: np.ndarray, absolute: float) -> None:
    _fast_passes_whole_audit(*_model(inner), absolute, 0.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.one_of(st.tuples(st.integers(2, 8), st.integers(2, 8)),
                       st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4))).flatmap(_cells),
       data=st.data())
def test_decomposed_audit_equals_whole_table_lp(inner: np.ndarray, data: st.DataObject) -> None:
    """Any suppression pattern (many components, unbounded cells when a cell and all its margins
    are hidden, exposed cells): the decomposed, batched attack gives the whole LP's intervals."""
    model, v = _model(inner)
    hide = data.draw(arrays(np.bool_, model.n, elements=st.booleans()))
    published = np.where(hide, np.nan, v)
    fast = attack(model, published, workers=1)
    whole = attack_whole(model, published)
    assert fast.consistent and whole.consistent
    assert np.array_equal(fast.lower, whole.lower) and np.array_equal(fast.upper, whole.upper)


def test_audit_split_between_two_workers_equals_one(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    inner = np.where(rng.random((30, 12)) < 0.25, rng.integers(1, 5, (30, 12)), rng.integers(5, 60, (30, 12)))
    model, v = _model(inner)
    published = np.where(threshold_rule(v, THRESHOLD, False) | (rng.random(model.n) < 0.1), np.nan, v)
    one = attack(model, published, workers=1)
    monkeypatch.setattr(audit_mod, "PARALLEL_TASKS", 10)
    monkeypatch.setattr(audit_mod, "_SPLIT_MIN", 1)  # the open problems go to both workers
    two = attack(model, published, workers=2)
    assert np.array_equal(one.lower, two.lower) and np.array_equal(one.upper, two.upper)
    assert np.array_equal(one.lower, attack_whole(model, published).lower)


def test_tampered_table_is_inconsistent_in_the_decomposed_audit() -> None:
    model, v = _model(np.array([[2, 10, 7], [7, 9, 30], [8, 8, 8]]))
    g = model.local[0].reshape(4, 4)
    pub = v.copy()
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        pub[g[i, j]] = np.nan
    pub[g[0, 3]] = 1.0  # a row total below its published part: no non-negative solution
    assert not attack(model, pub).consistent


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_linked_tables_pass_whole_audit(data: st.DataObject) -> None:
    """Two tables sharing a margin: perturbations in one table keep the shared cells fixed or
    move both tables together; the whole joint LP confirms every interval."""
    g, r, d = data.draw(st.integers(2, 4)), data.draw(st.integers(2, 5)), data.draw(st.integers(2, 5))
    recs = data.draw(arrays(np.int64, (g, r, d), elements=st.one_of(st.integers(0, 2), st.integers(3, 20))))
    a = TableShape("a", ("g", "r"), (tuple(map(str, range(g))), tuple(map(str, range(r)))))
    b = TableShape("b", ("g", "d"), (tuple(map(str, range(g))), tuple(map(str, range(d)))))
    model = build_model([a, b])
    v = global_values(model, [cube_with_margins(recs.sum(axis=2).astype(float)),
                              cube_with_margins(recs.sum(axis=1).astype(float))])
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    prot = protect_fast(model, v, primary, absolute=5.0)
    whole = attack_whole(model, np.where(prot.suppressed, np.nan, v))
    assert whole.consistent
    assert np.all(whole.width[prot.suppressed] >= 5.0 - 1e-9)


def _fast_within_ten_percent_of_per_cell(inner: np.ndarray):
    """Both methods protect every primary; the fast path uses at most 10% more secondary cells."""
    model, v = _model(inner)
    primary = threshold_rule(v, THRESHOLD, False)
    fast = protect_fast(model, v, primary, absolute=5)
    per_cell = protect_lp(model, v, primary, absolute=5)
    assert len(fast.failing) == 0 and len(per_cell.failing) == 0
    assert fast.secondary.sum() <= 1.1 * per_cell.secondary.sum()
    return fast


def test_fast_path_needs_no_more_cells_than_per_cell_lp_on_a_fixed_table() -> None:
    rng = np.random.default_rng(7)
    inner = np.where(rng.random((40, 12)) < 0.12, rng.integers(1, 5, (40, 12)), rng.integers(20, 80, (40, 12)))
    _fast_within_ten_percent_of_per_cell(inner)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 6), st.integers(2, 5), st.integers(2, 4)).flatmap(_cells),
       data=st.data())
def test_hypercube_is_a_perturbation_that_moves_its_cell(inner: np.ndarray, data: st.DataObject) -> None:
    """The hypercube through a cell (margins included) keeps every line adding up, and the
    cells it moves down have the room: the table plus it is a table the attacker cannot rule out."""
    model, v = _model(inner)
    sub = SubTables(model, 2)
    p = data.draw(st.integers(0, model.n - 1))
    up, down = data.draw(st.sampled_from([(3.0, 2.0), (5.0, 0.0), (1.0, 1.0)]))
    suppressed = threshold_rule(v, THRESHOLD, False)
    got = sub.hypercube(p, up, down, suppressed, np.ones(model.n), v)
    if got is None:
        return
    cells, signs = got
    assert cells[0] == p and signs[0] == 1.0 and len(np.unique(cells)) == len(cells)
    y = np.zeros(model.n)
    y[cells] = signs
    assert np.allclose(model.A @ y, 0.0)
    assert np.all(v[cells[signs < 0]] >= up) and np.all(v[cells[signs > 0]] >= down)


def test_hypercube_prefers_cells_already_suppressed() -> None:
    inner = np.full((4, 4, 3), 30)
    inner[0, 0, 0] = 2
    model, v = _model(inner)
    g = model.local[0].reshape(5, 5, 4)
    suppressed = np.zeros(model.n, dtype=bool)
    partner = [g[2, 3, 1], g[0, 3, 1], g[2, 0, 1], g[2, 3, 0], g[0, 0, 1], g[0, 3, 0], g[2, 0, 0]]
    suppressed[partner] = True
    suppressed[g[0, 0, 0]] = True
    cells, _ = SubTables(model, 2).hypercube(int(g[0, 0, 0]), 3.0, 2.0, suppressed, np.ones(model.n), v)
    assert set(cells.tolist()) == {int(g[0, 0, 0]), *map(int, partner)}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_linked_3d_tables_pass_whole_audit(data: st.DataObject) -> None:
    """3-D linked tables take the hypercube route: cells shared with the other table never move
    in it, so the joint LP audit still confirms every interval."""
    g, r, d, e = (data.draw(st.integers(2, 3)) for _ in range(4))
    recs = data.draw(arrays(np.int64, (g, r, d, e), elements=st.one_of(st.integers(0, 2), st.integers(3, 20))))
    lv = [tuple(map(str, range(s))) for s in (g, r, d, e)]
    a = TableShape("a", ("g", "r", "d"), (lv[0], lv[1], lv[2]))
    b = TableShape("b", ("g", "r", "e"), (lv[0], lv[1], lv[3]))
    model = build_model([a, b])
    v = global_values(model, [cube_with_margins(recs.sum(axis=3).astype(float)),
                              cube_with_margins(recs.sum(axis=2).astype(float))])
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    prot = protect_fast(model, v, primary, absolute=5.0)
    assert len(prot.failing) == 0
    whole = attack_whole(model, np.where(prot.suppressed, np.nan, v))
    assert whole.consistent
    assert np.all(whole.width[prot.suppressed] >= 5.0 - 1e-9)


def test_fast_path_3d_within_ten_percent_of_per_cell_lp() -> None:
    """Quality kept: the hypercube route adds at most 10% more secondary cells than the per-cell
    LP on a fixed 3-D table, and uses hypercubes (with them removed the count would differ)."""
    rng = np.random.default_rng(5)
    inner = np.where(rng.random((10, 8, 6)) < 0.08, rng.integers(1, 5, (10, 8, 6)), rng.integers(5, 60, (10, 8, 6)))
    fast = _fast_within_ten_percent_of_per_cell(inner)
    assert fast.hypercubes > 0


def test_hypercube_in_4d_with_few_levels_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4-D table (16 corners), with the levels scored per axis capped: still a perturbation."""
    import release.tables.subtables as sub_mod

    rng = np.random.default_rng(3)
    inner = np.where(rng.random((6, 5, 4, 3)) < 0.1, rng.integers(1, 5, (6, 5, 4, 3)), rng.integers(5, 60, (6, 5, 4, 3)))
    model, v = _model(inner)
    suppressed = threshold_rule(v, THRESHOLD, False)
    monkeypatch.setattr(sub_mod, "HYPERCUBE_GRID", 20)
    for p in np.flatnonzero(suppressed)[:5].tolist():
        cells, signs = SubTables(model, 2).hypercube(p, 3.0, min(2.0, v[p]), suppressed, np.ones(model.n), v)
        y = np.zeros(model.n)
        y[cells] = signs
        assert len(cells) == 16 and np.allclose(model.A @ y, 0.0)
