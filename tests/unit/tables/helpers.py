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
