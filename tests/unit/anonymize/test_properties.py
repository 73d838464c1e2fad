"""Property tests: every published class holds k records and meets l/t, or the release is blocked;
suppression stays within max_suppression; the search's node is optimal (brute force on small lattices)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.anonymize.assess import measure
from release.errors import BlockedError

from .helpers import apply, step

TREE = [{"a": "ab", "b": "ab", "c": "cd", "d": "cd"}]


@st.composite
def cases(draw):
    n = draw(st.integers(1, 60))
    rows = st.tuples(st.integers(0, 9), st.sampled_from("abcd"), st.sampled_from("xy"), st.sampled_from("pqr"))
    data = draw(st.lists(rows, min_size=n, max_size=n))
    frame = pd.DataFrame(data, columns=["num", "cat", "flag", "sens"])
    sens = {}
    model = draw(st.sampled_from(["none", "distinct", "entropy", "recursive", "t-equal", "t-ordered"]))
    if model in ("distinct", "entropy"):
        sens = {"sens": {"l": draw(st.sampled_from([1.5, 2.0])), "model": model}}
    elif model == "recursive":
        sens = {"sens": {"l": 2, "model": "recursive", "c": draw(st.sampled_from([1.0, 2.0, 3.0]))}}
    elif model.startswith("t-"):
        sens = {"sens": {"t": draw(st.sampled_from([0.2, 0.4])), "distance": model[2:]}}
    cfg = dict(k=draw(st.integers(2, 4)), max_suppression=draw(st.sampled_from([0.0, 0.1, 0.3])),
               loss=draw(st.sampled_from(["precision", "discernibility", "entropy"])),
               quasi_identifiers={"num": {"widths": [2, 4]}, "cat": {"tree": TREE}, "flag": {}}, sensitive=sens)
    return frame, cfg


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_search_matches_brute_force(case):
    frame, cfg = case
    prob = step(**cfg).build_problem(frame)
    want_node, want_loss = prob.brute_force()
    got = prob.search()
    assert got.node == want_node
    if want_node is not None:
        assert got.evaluation is not None and round(got.evaluation.loss, 12) == want_loss


@SETTINGS
@given(cases(), st.integers(1, 3))
def test_quick_k_test_with_hash_collisions_never_wrongly_fails_and_search_stays_optimal(case, bits):
    # A 2-8 bucket hash table forces collisions the full-size table only has on large files.
    frame, cfg = case
    want = step(**cfg).build_problem(frame).brute_force()
    prob = step(**cfg).build_problem(frame)
    prob.fast_bits = bits
    got = prob.search()
    assert got.node == want[0]
    check = step(**cfg).build_problem(frame)
    check.fast_bits = bits
    for node in itertools.product(*[range(h + 1) for h in check.heights]):
        if check._fast_fails(node):
            assert not check.evaluate(node).mono_ok, node


def test_top_down_search_matches_brute_force_on_a_wider_lattice():
    # Five columns (a 3*4*3*2*3 lattice) and enough records for the quick test's hashed path.
    rng = np.random.default_rng(7)
    n = 3000
    frame = pd.DataFrame({"num": rng.integers(0, 40, n), "cat": rng.choice(list("abcd"), n),
                          "flag": rng.choice(list("xy"), n), "other": rng.choice(list("abcd"), n, p=[.4, .3, .2, .1]),
                          "num2": rng.integers(0, 30, n)})
    for k, supp, loss in [(5, 0.02, "precision"), (10, 0.05, "entropy"), (3, 0.0, "precision"),
                          (5, 0.02, "discernibility")]:
        cfg = dict(k=k, max_suppression=supp, loss=loss,
                   quasi_identifiers={"num": {"widths": [5, 10]}, "cat": {"tree": TREE}, "flag": {},
                                      "other": {"tree": TREE}, "num2": {"widths": [10]}})
        want = step(**cfg).build_problem(frame).brute_force()
        for bits in (None, 4):
            prob = step(**cfg).build_problem(frame)
            prob.fast_bits = bits
            got = prob.search()
            assert got.node == want[0], (k, supp, loss, bits)
            assert got.evaluated < got.lattice_size


@SETTINGS
@given(cases(), st.sampled_from(["records", "cells"]))
def test_published_classes_meet_every_model_or_release_is_blocked(case, suppression):
    frame, cfg = case
    s = step(**cfg, suppression=suppression)
    try:
        out, ev, _ = apply(s, frame)
    except BlockedError as e:
        # Either no node satisfies the models, or suppression shifted the published distribution
        # so that t-closeness (measured on the published table) no longer holds.
        assert s.build_problem(frame).brute_force()[0] is None or "after suppression" in e.message
        return
    assert ev["suppressed_share"] <= cfg["max_suppression"] + 1e-12
    if not len(out):
        return
    fig = measure(out, ["num", "cat", "flag"], {}, s.sensitive, None, 0.2)
    assert fig["k"] >= cfg["k"]
    sp = s.sensitive.get("sens")
    if sp is not None and sp.l is not None:
        if sp.model == "recursive":
            assert fig["l"]["sens"]["recursive_ok"]
        else:
            got = fig["l"]["sens"][sp.model]
            assert got >= sp.l - 1e-9
    if sp is not None and sp.t is not None:
        assert fig["t"]["sens"] <= sp.t + 1e-9
    if suppression == "records":
        assert len(out) == len(frame) - ev["suppressed_records"]
    elif "fell back" not in ev["suppression"]:
        starred = (out[["num", "cat", "flag"]] == "*").all(axis=1)
        assert len(out) == len(frame) and int(starred.sum()) >= ev["suppressed_records"]


def test_blocked_when_nothing_satisfies():
    frame = pd.DataFrame({"num": [1, 2, 3], "cat": ["a", "b", "c"], "flag": ["x", "y", "x"], "sens": ["p"] * 3})
    s = step(k=2, quasi_identifiers={"num": {}, "cat": {}, "flag": {}}, sensitive={"sens": {"l": 2}})
    with pytest.raises(BlockedError, match="no generalization satisfies"):
        apply(s, frame)


def test_fixed_levels_skip_the_search_and_block_when_unsafe():
    frame = pd.DataFrame({"num": np.arange(10), "cat": list("aabbccddaa"), "flag": ["x"] * 10})
    s = step(k=2, quasi_identifiers={"num": {"widths": [2, 4]}, "cat": {"tree": TREE}, "flag": {}},
             levels={"num": 1, "cat": "max", "flag": 0})
    out, ev, _ = apply(s, frame)
    assert ev["levels"] == {"num": 1, "cat": 2, "flag": 0} and ev["nodes_evaluated"] == 1
    assert set(out["cat"]) == {"*"} and out["num"].tolist()[:2] == ["0-1", "0-1"]
    with pytest.raises(BlockedError, match="fixed levels"):
        apply(step(k=3, quasi_identifiers={"num": {}, "cat": {}, "flag": {}},
                   levels={"num": 0, "cat": 0, "flag": 0}), frame)


def test_local_suppression_stars_cells_and_star_class_is_k_anonymous():
    frame = pd.DataFrame({"num": [1] * 6 + [5, 6, 7], "cat": ["a"] * 6 + ["b", "c", "d"], "flag": ["x"] * 9})
    s = step(k=3, max_suppression=0.4, suppression="cells", quasi_identifiers={"num": {}, "cat": {}, "flag": {}})
    out, ev, _ = apply(s, frame)
    assert len(out) == 9 and ev["suppressed_records"] == 3
    assert ((out[["num", "cat", "flag"]] == "*").all(axis=1)).sum() == 3
    assert measure(out, ["num", "cat", "flag"], {}, {}, None, 0.2)["k"] == 3
    # Two starred records would form a class below k: they are removed instead.
    out2, ev2, _ = apply(step(k=3, max_suppression=0.3, suppression="cells",
                              quasi_identifiers={"num": {}, "cat": {}, "flag": {}}), frame.iloc[:8])
    assert len(out2) == 6 and "fell back" in ev2["suppression"]
