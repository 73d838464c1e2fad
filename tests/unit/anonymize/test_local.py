"""Local recoding (`recoding: local`): every class meets k, l and t; every published value is a node
of the column's hierarchy that holds the record's true value, or for an ordered column an interval of
its values that holds it; it loses less than full-domain generalization on spread-out data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.anonymize.assess import measure
from release.errors import BlockedError

from .helpers import apply, step
from .test_properties import TREE

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def local_cases(draw):
    n = draw(st.integers(1, 80))
    rows = st.tuples(st.integers(0, 19), st.sampled_from("abcd"), st.sampled_from("xy"), st.sampled_from("pqr"),
                     st.integers(0, 9))
    data = draw(st.lists(rows, min_size=n, max_size=n))
    frame = pd.DataFrame(data, columns=["num", "cat", "flag", "sens", "day"])
    frame["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["day"] * 9, unit="D")
    model = draw(st.sampled_from(["none", "distinct", "entropy", "recursive", "t"]))
    sens = {}
    if model in ("distinct", "entropy"):
        sens = {"sens": {"l": 2, "model": model}}
    elif model == "recursive":
        sens = {"sens": {"l": 2, "model": "recursive", "c": 2.0}}
    elif model == "t":
        sens = {"sens": {"t": draw(st.sampled_from([0.3, 0.5]))}}
    qis = {"num": {"widths": [5, 10]}, "cat": {"tree": TREE}, "flag": {}, "day": {"time": ["day", "month"]}}
    return frame, dict(k=draw(st.integers(2, 4)), recoding="local", quasi_identifiers=qis, sensitive=sens)


def holds_true_value(frame: pd.DataFrame, out: pd.DataFrame) -> None:
    """Every published value generalizes the record's own value."""
    num = frame["num"].to_numpy()
    for i, lab in zip(frame.index, out["num"].astype(str), strict=True):
        v = num[frame.index.get_loc(i)]
        if lab != "*":
            lo, _, hi = lab.partition("-")
            assert float(lo) <= v <= float(hi or lo), (lab, v)
    days = frame["day"].dt.strftime("%Y-%m-%d").to_numpy()
    for d, lab in zip(days, out["day"].astype(str), strict=True):
        if lab == "*":
            continue
        if "/" in lab:
            lo, hi = lab.split("/")
            assert lo <= d <= hi, (lab, d)
        else:
            assert d.startswith(lab), (lab, d)  # a day, or the month it is in
    tree = TREE[0]
    for c, lab in zip(frame["cat"], out["cat"].astype(str), strict=True):
        assert lab in (c, tree[c], "*"), (lab, c)
    for f, lab in zip(frame["flag"], out["flag"].astype(str), strict=True):
        assert lab in (f, "*")


@SETTINGS
@given(local_cases())
def test_local_classes_meet_every_model_and_values_are_hierarchy_values(case):
    frame, cfg = case
    s = step(**cfg)
    try:
        out, ev, ctx = apply(s, frame)
    except BlockedError as e:
        # Only when the whole file, every value '*', fails the models: then nothing could help.
        top = measure(frame.assign(num="*", cat="*", flag="*", day="*"), ["num", "cat", "flag", "day"], {},
                      s.sensitive, None, 0.2)
        sp = s.sensitive.get("sens")
        assert top["k"] < cfg["k"] or sp is not None, e.message
        return
    assert len(out) == len(frame) and ev["suppressed_records"] == 0
    fig = measure(out, ["num", "cat", "flag", "day"], {}, s.sensitive, None, 0.2)
    assert fig["k"] >= cfg["k"]
    sp = s.sensitive.get("sens")
    if sp is not None and sp.l is not None:
        got = fig["l"]["sens"]["recursive_ok"] if sp.model == "recursive" else fig["l"]["sens"][sp.model] >= 2 - 1e-9
        assert got
    if sp is not None and sp.t is not None:
        assert fig["t"]["sens"] <= sp.t + 1e-9
    holds_true_value(frame, out)
    assert ev["fairness"]["overall_suppressed"] == "< 1%"


def spread(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"area": rng.choice([f"A{i:02d}" for i in range(40)], n),
                         "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 366, n), unit="D"),
                         "kind": rng.choice(list("abcdef"), n)})


def test_local_recoding_keeps_more_detail_than_full_domain_on_spread_out_data():
    frame = spread()
    qis = {"area": {"tree": [{f"A{i:02d}": f"R{i // 8}" for i in range(40)}]},
           "day": {"time": ["day", "month", "quarter"]},
           "kind": {"tree": [{"a": "ab", "b": "ab", "c": "cd", "d": "cd", "e": "ef", "f": "ef"}]}}
    _, full, _ = apply(step(k=5, max_suppression=0.02, quasi_identifiers=qis), frame)
    out, local, _ = apply(step(k=5, recoding="local", quasi_identifiers=qis), frame)
    assert local["information_loss"] < full["information_loss"]
    # Local recoding publishes several levels of one column side by side (that is what it is for).
    assert len(local["levels_used"]["area"]) >= 2 and "interval" in local["levels_used"]["day"]
    assert measure(out, list(qis), {}, {}, None, 0.2)["k"] >= 5


def test_local_recoding_blocks_when_the_whole_file_fails_and_refuses_full_domain_settings():
    frame = pd.DataFrame({"cat": ["a", "b", "c"], "sens": ["p", "p", "p"]})
    with pytest.raises(BlockedError, match="even with every value generalized"):
        apply(step(k=2, recoding="local", quasi_identifiers={"cat": {}}, sensitive={"sens": {"l": 2}}), frame)
    for bad in ({"levels": {"cat": 0}}, {"max_suppression": 0.1}, {"suppression": "cells"}):
        with pytest.raises(ValueError, match="recoding: local"):
            step(k=2, recoding="local", quasi_identifiers={"cat": {}}, **bad)


def test_a_local_recoding_release_passes_release_check(tmp_path):
    import json

    from release.check import check_bundle
    from release.engine import run_release
    from tests.system.mini import mini_policy, mini_records, write_policy

    k_step = {"type": "k-anonymity", "k": 4, "recoding": "local",
              "quasi_identifiers": {"category": {}, "age": {"widths": [10, 50]}, "division": {}}}
    pol = write_policy(tmp_path / "p.yaml", mini_policy(
        steps=[{"type": "drop", "roles": ["direct-identifier"]}, k_step],
        outputs=[{"name": "records", "kind": "records", "columns": ["category", "age", "division"]}],
        gate={"min_k": 4, "min_k_published": 4}))
    mini_records(400).to_csv(tmp_path / "in.csv", index=False)
    res = run_release(pol, tmp_path / "in.csv", tmp_path / "out", seed=1)
    rep = json.loads((res.bundle / "report.json").read_text())
    step_ev = next(s for s in rep["steps"] if s["type"] == "k-anonymity")
    assert step_ev["recoding"] == "local" and "interval" in step_ev["levels_used"]["age"]
    checked = check_bundle(res.bundle, {"allow_unapproved": True})
    assert checked.ok, [f.message for f in checked.findings if not f.ok]
    assert any(f.check == "k-anonymity-published" and f.ok for f in checked.findings)
