"""Keyed per-record uniforms: a function of (source, purpose, record id) alone, uniform, batch-invariant."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from release.series.keyed import keyed_uniforms, mask_key

SECRET = b"a-deployment-secret-of-32-bytes!"


def test_same_record_same_values_whatever_else_is_in_the_release() -> None:
    k = mask_key(SECRET, "crime-records", "donut")
    a = keyed_uniforms(pd.Series([f"R{i}" for i in range(1000)]), k)
    b = keyed_uniforms(pd.Series([f"R{i}" for i in range(500, 1500)][::-1]), k)
    np.testing.assert_array_equal(a[500:], b[500:][::-1])
    # An integer record id gives the value of its text (one policy reads ids as integers, another as text).
    np.testing.assert_array_equal(keyed_uniforms(pd.Series([12, 13]), k), keyed_uniforms(pd.Series(["12", "13"]), k))


def test_other_source_purpose_secret_or_tweak_give_independent_values() -> None:
    ids = pd.Series([f"R{i}" for i in range(2000)])
    base = keyed_uniforms(ids, mask_key(SECRET, "crime-records", "donut"))
    for other in (keyed_uniforms(ids, mask_key(SECRET, "use-of-force-records", "donut")),
                  keyed_uniforms(ids, mask_key(SECRET, "crime-records", "donut-redraw-0")),
                  keyed_uniforms(ids, mask_key(b"another-secret-of-32-bytes-long!", "crime-records", "donut")),
                  keyed_uniforms(ids, mask_key(SECRET, "crime-records", "donut"), np.full(2000, 301.0))):
        assert (other == base).mean() < 0.01
        assert abs(stats.pearsonr(other[:, 0], base[:, 0])[0]) < 0.1


def test_values_are_uniform() -> None:
    u = keyed_uniforms(pd.Series(np.arange(40000)), mask_key(SECRET, "s", "p"))
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u[:, 0], "uniform").pvalue > 0.001 and stats.kstest(u[:, 1], "uniform").pvalue > 0.001


@settings(max_examples=30, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60, unique=True),
       cut=st.integers(0, 60))
def test_batch_invariant(ids: list[str], cut: int) -> None:
    k = mask_key(SECRET, "crime-records", "donut")
    whole = keyed_uniforms(pd.Series(ids), k)
    parts = np.vstack([keyed_uniforms(pd.Series(ids[:cut]), k), keyed_uniforms(pd.Series(ids[cut:]), k)])
    np.testing.assert_array_equal(whole, parts)


def test_known_answer_pins_the_mask_for_life() -> None:
    # A record's mask is promised for life: an upgrade of pandas (SipHash), cryptography (AES, HKDF) or
    # this code that changed these values would move every published point, so it must fail here first.
    key = mask_key(b"known-answer secret", "crime-records", "donut")
    got = keyed_uniforms(pd.Series(["GO-2020-1", "GO-2020-2"]), key)
    np.testing.assert_array_equal(got, [[0.08165290556677784, 0.23091811460116674],
                                        [0.5329878628926602, 0.2525109452626787]])
    np.testing.assert_array_equal(keyed_uniforms(pd.Series([123]), key),
                                  [[0.615594118066518, 0.18949711636177324]])
