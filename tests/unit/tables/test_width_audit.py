"""The proof-of-width audit (large components) against the exact audit: never passes more, never less."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import release.tables.audit as audit_mod
from release.tables.audit import attack, attack_whole
from release.tables.primary import threshold_rule
from release.tables.secondary import protect_fast, required_widths
from tests.unit.tables.helpers import _cells, _model, protected_3d

_SHAPES = st.one_of(st.tuples(st.integers(2, 8), st.integers(2, 8)),
                    st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4)))


def _short(audit: audit_mod.Audit, need: np.ndarray) -> np.ndarray:
    return audit.suppressed & (audit.width < np.nan_to_num(need, nan=0.0) - 1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=_SHAPES.flatmap(_cells), data=st.data(), integer=st.booleans(), ipm=st.booleans())
def test_width_proof_fails_exactly_where_the_exact_audit_fails(inner: np.ndarray, data: st.DataObject,
                                                              integer: bool, ipm: bool) -> None:
    """Forced onto every component (proof_from=1): each proved interval lies inside the exact
    one, equals it where it claims to be exact, is at least the width asked where it is not,
    and the cells short of their width are exactly the exact audit's short cells."""
    model, v = _model(inner)
    small = threshold_rule(v, 5, protect_zeros=False)
    hide = small | data.draw(arrays(np.bool_, model.n, elements=st.booleans()))
    published = np.where(hide, np.nan, v)
    need = np.where(hide, data.draw(arrays(np.float64, model.n, elements=st.sampled_from([1.0, 3.0, 5.0, 8.0]))),
                    np.nan)
    with mock.patch.object(audit_mod, "IPM_FIRST_CELLS", 1 if ipm else audit_mod.IPM_FIRST_CELLS):
        width = attack(model, published, workers=1, integer=integer, need=need, proof_from=1)
    exact = attack_whole(model, published, integer=integer)
    assert width.consistent == exact.consistent
    assert width.inexact is not None and not width.inexact[~hide].any()
    tol = 1e-6
    assert np.all(width.lower >= exact.lower - tol) and np.all(width.upper <= exact.upper + tol)
    claims = ~width.inexact
    assert np.allclose(width.lower[claims], exact.lower[claims], atol=tol, rtol=0)
    assert np.array_equal(np.isinf(width.upper[claims]), np.isinf(exact.upper[claims]))
    fin = claims & np.isfinite(exact.upper)
    assert np.allclose(width.upper[fin], exact.upper[fin], atol=tol, rtol=0)
    assert np.all(width.width[width.inexact] >= need[width.inexact] - 1e-9)
    assert np.array_equal(_short(width, need), _short(exact, need))


def _thin() -> tuple[object, np.ndarray, np.ndarray]:
    """A 3 x 3 table with the four cells of one rectangle hidden: the top-left cell moves in
    [0, 3] (the others of the rectangle are 2, 3 and 40), so its interval is 3 wide."""
    model, v = _model(np.array([[1, 2, 10], [3, 40, 10], [10, 10, 10]]))
    keys = [dict(k) for k in model.keys]
    rect = np.array([k.get("d0") in ("0", "1") and k.get("d1") in ("0", "1") for k in keys])
    return model, v, np.where(rect, np.nan, v)


def test_a_pattern_too_thin_for_its_width_fails_in_both() -> None:
    model, v, published = _thin()
    S = np.isnan(published)
    exact = attack_whole(model, published)
    for need_w in (5.0, 3.0):
        need = np.where(S, need_w, np.nan)
        width = attack(model, published, workers=1, need=need, proof_from=1)
        assert exact.smallest_width() == 3.0
        if need_w == 5.0:
            # Too thin: no two tables 5 apart exist, so no cell is proved; every interval is the
            # exact one and the audit fails where the exact audit fails.
            assert not width.inexact.any()
            assert np.array_equal(width.lower, exact.lower) and np.array_equal(width.upper, exact.upper)
            assert _short(width, need).all() == _short(exact, need).all()
            assert _short(width, need)[S].all()
        else:
            assert not _short(width, need).any() and not _short(exact, need).any()


def test_width_proof_on_a_large_component_needs_far_fewer_solves() -> None:
    # A pattern protection leaves on a 3-D table: one large component.
    model, v, published = protected_3d()
    S = np.isnan(published)
    need = np.where(S, 5.0, np.nan)
    exact = attack(model, published, workers=1, need=need)  # below WIDTH_PROOF_CELLS: exact
    width = attack(model, published, workers=1, need=need, proof_from=1)
    assert exact.largest_component > 50 and exact.exact and exact.inexact is not None
    assert width.inexact is not None and width.inexact.sum() > S.sum() // 4
    assert width.solves * 4 < exact.solves
    assert width.smallest_width() >= 5 and exact.smallest_width() >= 5
    # `exact=True` ignores the threshold: every interval exact again.
    again = attack(model, published, workers=1, need=need, proof_from=1, exact=True)
    assert again.exact and np.array_equal(again.lower, exact.lower) and np.array_equal(again.upper, exact.upper)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.one_of(st.tuples(st.integers(2, 7), st.integers(2, 6)),
                       st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4))).flatmap(_cells),
       relative=st.sampled_from([0.0, 0.5]))
def test_fast_path_with_width_proofs_passes_whole_table_audit(inner: np.ndarray, relative: float) -> None:
    """Protection whose every audit proves widths only still leaves a pattern the exact
    whole-table LP passes, and its reported intervals lie inside the exact ones."""
    model, v = _model(inner)
    primary = threshold_rule(v, 5, protect_zeros=False)
    prot = protect_fast(model, v, primary, absolute=5.0, relative=relative, proof_from=1)
    assert len(prot.failing) == 0
    whole = attack_whole(model, np.where(prot.suppressed, np.nan, v))
    need = required_widths(model, v, primary, 5.0, relative, integer=True)
    assert np.all(whole.width[primary] >= need[primary] - 1e-9)
    assert np.all(whole.width[prot.suppressed] >= 5.0 - 1e-9)
    assert np.all(prot.audit.lower >= whole.lower) and np.all(prot.audit.upper <= whole.upper)


def test_width_proof_is_the_same_on_one_core_or_two() -> None:
    """`release check` must find the run's proved intervals on any machine: the proof is not
    shared out between workers (which witness proves a cell depends on the order of solves)."""
    rng = np.random.default_rng(3)
    inner = rng.poisson(np.exp(rng.normal(2.0, 1.0, (12, 10, 6))))
    model, v = _model(inner)
    published = np.where(threshold_rule(v, 5, protect_zeros=False) | (rng.random(model.n) < 0.3), np.nan, v)
    # A width many cells lack: their exact LPs run after the spreading rounds, and the cells
    # their vertices prove depend on which LPs one process solves (a split gave other spans).
    need = np.where(np.isnan(published), 20.0, np.nan)
    with mock.patch.object(audit_mod, "PARALLEL_TASKS", 2), mock.patch.object(audit_mod, "_SPLIT_MIN", 1):
        one = attack(model, published, workers=1, need=need, proof_from=1)
        two = attack(model, published, workers=2, need=need, proof_from=1)
        # Exact components are still shared out (and give the same exact intervals).
        exact_two = attack(model, published, workers=2)
    assert one.inexact is not None and two.inexact is not None and one.inexact.any()
    assert np.array_equal(one.lower, two.lower) and np.array_equal(one.upper, two.upper)
    assert np.array_equal(one.inexact, two.inexact)
    whole = attack(model, published, workers=1)
    assert np.array_equal(exact_two.lower, whole.lower) and np.array_equal(exact_two.upper, whole.upper)


def test_a_passing_screen_is_not_repeated_when_it_is_the_audit() -> None:
    """Small cells that protect one another: the first pass (the screen, proving widths on
    every component) passes. It is the final audit when it asked the audit proper's question
    (components at or above the threshold) or already holds exact intervals; otherwise the
    exact audit follows."""
    import release.tables.secondary as secondary_mod

    every_cell_small = _model(np.full((4, 4), 2))  # the screen's witnesses meet every bound
    one_proved = _model(np.array([[2, 4, 8], [1, 2, 4], [2, 3, 3], [0, 0, 0], [5, 8, 8]]))
    for (model, v), proof_from, calls in ((every_cell_small, 1, 1),
                                          (every_cell_small, audit_mod.WIDTH_PROOF_CELLS, 1),
                                          (one_proved, 1, 1),
                                          (one_proved, audit_mod.WIDTH_PROOF_CELLS, 2)):
        primary = threshold_rule(v, 5, protect_zeros=False)
        with mock.patch.object(secondary_mod, "attack", wraps=attack) as spy:
            prot = protect_fast(model, v, primary, absolute=5.0, proof_from=proof_from)
        assert spy.call_count == calls and prot.secondary.sum() == 0 and len(prot.failing) == 0
        assert prot.audit.proof_from == proof_from and prot.audit.smallest_width() >= 5
        # Below the threshold the reported intervals are exact.
        assert prot.audit.exact or proof_from == 1
