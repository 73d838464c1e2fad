"""Random tables for the table tests: a table's model with its margins, and cell strategies."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from release.tables.model import TableShape, build_model, cube_with_margins, global_values


def _model(inner: np.ndarray) -> tuple[Any, np.ndarray]:
    """The linear model of one table of these inner cells, and every cell's value margins included."""
    dims = tuple(f"d{i}" for i in range(inner.ndim))
    shape = TableShape("t", dims, tuple(tuple(str(j) for j in range(s)) for s in inner.shape))
    model = build_model([shape])
    return model, global_values(model, [cube_with_margins(inner.astype(float))])


def _cells(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    # Mostly comfortable counts with a fair share of small ones (and zeros).
    return arrays(np.int64, shape, elements=st.one_of(st.integers(0, 6), st.integers(5, 60)))


def protected_3d(seed: int = 5, shape: tuple[int, int, int] = (10, 8, 6)) -> tuple[Any, np.ndarray, np.ndarray]:
    """(model, values, published) of a pattern protection leaves on a random 3-D table: one large component."""
    from release.tables.primary import threshold_rule
    from release.tables.secondary import protect_fast

    rng = np.random.default_rng(seed)
    inner = rng.poisson(np.exp(rng.normal(2.5, 1.0, shape)))
    model, v = _model(inner)
    primary = threshold_rule(v, 5, protect_zeros=False)
    published = np.where(protect_fast(model, v, primary, absolute=5.0).suppressed, np.nan, v)
    return model, v, published
