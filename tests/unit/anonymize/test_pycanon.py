"""The engine's k and l agree with pycanon's on random data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.anonymize.assess import measure
from release.anonymize.models import SensitiveSpec

pycanon = pytest.importorskip("pycanon")
from pycanon import anonymity  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(5, 400), st.integers(2, 6))
def test_k_and_distinct_l_agree_with_pycanon(seed, n, card):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, card, n).astype(str), "b": rng.choice(list("xyz"), n),
                       "c": rng.integers(0, 3, n).astype(str), "s": rng.choice(list("pqrs"), n)})
    qi = ["a", "b", "c"]
    fig = measure(df, qi, {}, {"s": SensitiveSpec(l=1)}, None, 0.2)
    assert fig["k"] == anonymity.k_anonymity(df, qi)
    assert fig["l"]["s"]["distinct"] == anonymity.l_diversity(df, qi, ["s"])


def test_entropy_l_agrees_with_pycanon():
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"a": rng.integers(0, 3, 300).astype(str), "s": rng.choice(list("pqrs"), 300, p=[.7, .1, .1, .1])})
    fig = measure(df, ["a"], {}, {"s": SensitiveSpec(l=1, model="entropy")}, None, 0.2)
    theirs = anonymity.entropy_l_diversity(df, ["a"], ["s"])
    # pycanon reports the largest integer l with exp(H) >= l.
    assert int(np.floor(fig["l"]["s"]["entropy"] + 1e-9)) == int(theirs)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(4096, 12000))
def test_published_csv_columns_agree_with_pycanon(tmp_path_factory, seed, n):
    """Columns read back from a published CSV take the object-identity path; k, l and classes stay exact."""
    from release.anonymize.assess import class_sizes, column_codes
    from release.io.bundle import read_published_csv
    from release.policy.base import ColumnSpec, ColumnType

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 9, n).astype(str), "b": rng.choice(["x", "y", "zz", ""], n),
                       "c": rng.choice(["10", "10.0", "x y"], n), "s": rng.choice(list("pqrs"), n)})
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    df.to_csv(path, index=False)
    pub = read_published_csv(path, {c: ColumnSpec(type=ColumnType.category, required=False) for c in df.columns})
    for c in pub.columns:
        mine, u = column_codes(pub[c])
        theirs, uniq = pd.factorize(pub[c])
        assert u == len(uniq)
        assert np.array_equal(mine < 0, theirs < 0)
        # Same partition of the rows: the pair (mine, theirs) takes exactly as many values as either.
        assert len(np.unique(mine * (u + 2) + theirs)) == u + int((theirs < 0).any())
    qi = ["a", "b", "c"]
    fig = measure(pub, qi, {}, {"s": SensitiveSpec(l=1)}, None, 0.2)
    _, sizes, _ = class_sizes(pub, qi, {})
    assert np.array_equal(sizes, pub.groupby(qi, dropna=False)["s"].transform("size").to_numpy(dtype=float))
    assert fig["k"] == anonymity.k_anonymity(pub, qi)
    assert fig["l"]["s"]["distinct"] == anonymity.l_diversity(pub, qi, ["s"])
