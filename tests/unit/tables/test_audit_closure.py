"""The audit's bound propagation and witness closure against an LP of every cell's own."""

from __future__ import annotations

from unittest import mock

import highspy
import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import release.tables.audit as audit_mod
from release.tables.audit import _propagate, attack, attack_whole
from release.tables.primary import threshold_rule
from tests.unit.tables.helpers import _cells, _model, protected_3d

_SHAPES = st.one_of(st.tuples(st.integers(2, 8), st.integers(2, 8)),
                    st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4)))


def _pattern(model, v, data: st.DataObject) -> np.ndarray:
    """Small cells (as protection would) plus random others, margins included."""
    extra = data.draw(arrays(np.bool_, model.n, elements=st.booleans()))
    return np.where(threshold_rule(v, 5, protect_zeros=False) | extra, np.nan, v)


def test_propagation_proves_a_bound_no_single_line_gives() -> None:
    # x + y = 10 and y + z = 3: the second line caps y at 3, so the first forces x >= 7.
    B = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    lower, upper = _propagate(B, np.array([10.0, 3.0]))
    assert lower.tolist() == [7.0, 0.0, 0.0]
    assert upper.tolist() == [10.0, 3.0, 3.0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=_SHAPES.flatmap(_cells), data=st.data())
def test_propagated_bounds_bracket_every_lp_optimum(inner: np.ndarray, data: st.DataObject) -> None:
    """Propagation is a relaxation: no cell's LP minimum or maximum lies outside its bounds."""
    model, v = _model(inner)
    published = _pattern(model, v, data)
    S = np.isnan(published)
    A = model.A.tocsc()
    rhs = -(A @ np.where(S, 0.0, published))
    lower, upper = _propagate(A[:, S].tocsr(), rhs)
    whole = attack_whole(model, published, integer=False)
    assert np.all(lower <= whole.lower[S] + 1e-6)
    assert np.all(upper >= whole.upper[S] - 1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=_SHAPES.flatmap(_cells), data=st.data(), integer=st.booleans())
def test_witness_closure_equals_every_cell_by_its_own_lp(inner: np.ndarray, data: st.DataObject,
                                                         integer: bool) -> None:
    """Cells closed by a witness meeting a propagated bound (no LP of their own) get exactly the
    interval an LP per cell gives; unrounded too, where rounding could not hide an error."""
    model, v = _model(inner)
    published = _pattern(model, v, data)
    fast = attack(model, published, workers=1, integer=integer)
    whole = attack_whole(model, published, integer=integer)
    assert fast.consistent and whole.consistent
    if integer:
        assert np.array_equal(fast.lower, whole.lower) and np.array_equal(fast.upper, whole.upper)
    else:
        assert np.allclose(fast.lower, whole.lower, atol=1e-6, rtol=0)
        assert np.allclose(fast.upper, whole.upper, atol=1e-6, rtol=0)


def test_witnesses_close_most_problems_without_their_own_lp() -> None:
    # A pattern protection leaves on a 3-D table: one large component.
    model, v, published = protected_3d()
    fast = attack(model, published, workers=1)
    open_cells = int(np.isnan(published).sum())
    assert fast.largest_component > 50
    # Two problems (min, max) per cell; witnesses meeting a propagated bound close most of them
    # (single-line bounds alone: 119 LPs here, propagated bounds: 75).
    assert fast.certified > open_cells
    assert fast.solves < open_cells // 2
    whole = attack_whole(model, published)
    assert np.array_equal(fast.lower, whole.lower) and np.array_equal(fast.upper, whole.upper)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=_SHAPES.flatmap(_cells), data=st.data())
def test_interior_point_first_vertex_equals_every_cell_by_its_own_lp(inner: np.ndarray,
                                                                    data: st.DataObject) -> None:
    """With the first vertex from interior point plus crossover (large components), every
    interval still equals one LP per cell: the warm starts run from the crossover's basis."""
    model, v = _model(inner)
    published = _pattern(model, v, data)
    with mock.patch.object(audit_mod, "IPM_FIRST_CELLS", 1):
        fast = attack(model, published, workers=1)
    whole = attack_whole(model, published)
    assert fast.consistent and whole.consistent
    assert np.array_equal(fast.lower, whole.lower) and np.array_equal(fast.upper, whole.upper)


def test_first_vertex_of_a_large_block_comes_from_interior_point_with_a_basis() -> None:
    rng = np.random.default_rng(3)
    inner = rng.poisson(np.exp(rng.normal(2.0, 1.0, (40, 40))))
    model, v = _model(inner)
    published = np.where(threshold_rule(v, 5, protect_zeros=False) | (rng.random(model.n) < 0.6), np.nan, v)
    S = np.isnan(published)
    A = model.A.tocsc()
    B = A[:, S].tocsr()
    k = B.shape[1]
    assert k >= audit_mod.IPM_FIRST_CELLS
    h = audit_mod.new_highs()
    audit_mod.pass_lp(h, B, -(A @ np.where(S, 0.0, published)), -(A @ np.where(S, 0.0, published)),
                      np.zeros(k), np.full(k, np.inf), np.ones(k))
    st_ = audit_mod._first_vertex(h, k)
    assert st_ == highspy.HighsModelStatus.kOptimal
    assert h.getInfo().ipm_iteration_count > 0 and h.getBasis().valid
    # The warm start from that basis: a cost change solves without a restart from scratch.
    h.changeColsCost(k, np.arange(k, dtype=np.int32), np.zeros(k))
    h.changeColCost(0, -1.0)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    assert h.getInfo().ipm_iteration_count == 0
