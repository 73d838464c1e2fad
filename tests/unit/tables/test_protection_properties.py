"""Acceptance 2: on random 2-D and 3-D tables, after protection every primary cell keeps its interval."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from release.tables.audit import attack
from release.tables.model import TableShape, build_model, cube_with_margins, global_values
from release.tables.primary import threshold_rule
from release.tables.secondary import protect_lp, protect_naive, required_widths
from tests.unit.tables.helpers import _cells, _model

THRESHOLD = 5




def _check(inner: np.ndarray, absolute: float, relative: float, method: str, local: int | None = None) -> None:
    model, v = _model(inner)
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    if method == "lp":
        prot = protect_lp(model, v, primary, absolute=absolute, relative=relative, local=local)
    else:
        prot = protect_naive(model, v, primary, absolute=absolute, relative=relative)
    assert prot.suppressed[primary].all()
    # Re-audit from the published values alone (independent of the protection's own audit).
    published = np.where(prot.suppressed, np.nan, v)
    audit = attack(model, published)
    assert audit.consistent
    need = required_widths(model, v, primary, absolute, relative, integer=True)
    width = audit.width
    assert np.all(width[primary] >= need[primary] - 1e-9), (width[primary], need[primary])
    # The attacker's interval always contains the truth (the audit is sound).
    s = prot.suppressed
    assert np.all(audit.lower[s] <= v[s] + 1e-9) and np.all(v[s] <= audit.upper[s] + 1e-9)
    # No published cell is below the threshold.
    assert not threshold_rule(published, THRESHOLD, protect_zeros=False).any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 7), st.integers(2, 6)).flatmap(_cells),
       absolute=st.sampled_from([1.0, 5.0, 8.0]), relative=st.sampled_from([0.0, 0.5]),
       local=st.sampled_from([None, 0, 1]))
def test_lp_protection_2d(inner: np.ndarray, absolute: float, relative: float, local: int | None) -> None:
    """None: sub-tables sized automatically (here the whole table); 0: one warm-started LP; 1: tiny sub-tables."""
    _check(inner, absolute, relative, "lp", local)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 3)).flatmap(_cells),
       absolute=st.sampled_from([1.0, 5.0]), local=st.sampled_from([None, 0, 1]))
def test_lp_protection_3d(inner: np.ndarray, absolute: float, local: int | None) -> None:
    _check(inner, absolute, 0.0, "lp", local)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.tuples(st.integers(2, 6), st.integers(2, 5)).flatmap(_cells))
def test_naive_baseline_also_protects_2d(inner: np.ndarray) -> None:
    _check(inner, 5.0, 0.0, "naive")


def test_lp_uses_fewer_cells_than_naive_on_a_fixed_table() -> None:
    rng = np.random.default_rng(7)
    inner = np.where(rng.random((12, 8)) < 0.12, rng.integers(1, 5, (12, 8)), rng.integers(20, 80, (12, 8)))
    model, v = _model(inner)
    primary = threshold_rule(v, THRESHOLD, False)
    lp = protect_lp(model, v, primary, absolute=5)
    naive = protect_naive(model, v, primary, absolute=5)
    assert len(lp.failing) == 0 and len(naive.failing) == 0
    assert lp.secondary.sum() <= naive.secondary.sum()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_joint_tables_sharing_a_margin(data: st.DataObject) -> None:
    """Two tables of the same records sharing the first dimension: protected and audited jointly."""
    g, r, d = data.draw(st.integers(2, 4)), data.draw(st.integers(2, 5)), data.draw(st.integers(2, 5))
    recs = data.draw(arrays(np.int64, (g, r, d), elements=st.one_of(st.integers(0, 2), st.integers(3, 20))))
    a = TableShape("a", ("g", "r"), (tuple(map(str, range(g))), tuple(map(str, range(r)))))
    b = TableShape("b", ("g", "d"), (tuple(map(str, range(g))), tuple(map(str, range(d)))))
    model = build_model([a, b])
    cubes = [cube_with_margins(recs.sum(axis=2).astype(float)), cube_with_margins(recs.sum(axis=1).astype(float))]
    v = global_values(model, cubes)
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    prot = protect_lp(model, v, primary, absolute=5.0)
    audit = attack(model, np.where(prot.suppressed, np.nan, v))
    assert audit.consistent
    assert np.all(audit.width[prot.suppressed] >= 5.0 - 1e-9)
    # A shared gender total is one cell: suppressed or published in both tables at once.
    ga, gb = model.local[0].reshape(g + 1, r + 1)[:, -1], model.local[1].reshape(g + 1, d + 1)[:, -1]
    assert list(ga) == list(gb)
