"""Post-processing invariants: least squares + rounding give non-negative integers consistent with margins."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from release.dp.postprocess import (
    group_index,
    least_squares,
    margin_of,
    round_within_groups,
    suppress,
)

shapes = st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(shapes.flatmap(lambda s: st.tuples(st.just(s), arrays(np.float64, int(np.prod(s)),
                                                              elements=st.floats(-20, 200)))))
def test_least_squares_then_rounding(data: tuple[tuple[int, int, int], np.ndarray]) -> None:
    shape, noisy = data
    keep = (0,)
    z = margin_of(noisy, shape, keep) + 7.0  # margins that disagree with the cells
    x = least_squares(noisy, shape, [(keep, z)])
    # Normal equations hold: the residual is orthogonal to the design.
    a = x - noisy
    m = margin_of(x, shape, keep) - z
    grad = a + np.broadcast_to(m.reshape(shape[0], 1, 1), shape).ravel()
    assert np.abs(grad).max() < 1e-6
    r = round_within_groups(x, group_index(shape, keep))
    assert r.dtype == np.int64 and (r >= 0).all()
    # Each margin entry is its rounded least-squares total (clipped at 0 as a whole), not the total of
    # the clipped cells: clipping small cells must not push their margin upward.
    target = np.rint(np.clip(margin_of(x, shape, keep), 0, None))
    assert (margin_of(r, shape, keep) == target).all()
    # Cells are the clipped estimates scaled down within their entry, then rounded (never above).
    assert (r < np.clip(x, 0, None) + 1.0 + 1e-9).all()


def test_consistent_input_is_left_unchanged() -> None:
    cells = np.arange(12.0)
    shape = (3, 4)
    margins = [((0,), margin_of(cells, shape, (0,))), ((1,), margin_of(cells, shape, (1,)))]
    assert np.allclose(least_squares(cells, shape, margins), cells)


def test_suppression_looks_only_at_the_values_given() -> None:
    assert suppress(np.array([0, 4, 5, 9]), 5).tolist() == [True, True, False, False]
    assert not suppress(np.array([0, 1]), None).any()
