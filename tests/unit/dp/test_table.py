"""The dp-table output: policy checks, public keys, discovery, zCDP, sums, suppression, tamper detection."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from release.context import AssessContext, StepContext
from release.errors import PolicyError
from release.plan import compile_plan
from release.policy.loader import parse_policy

BASE = """
version: 1
dataset: {name: t, title: t, publisher: test}
jurisdiction: {bbox: [-80, 43, -79, 44]}
input:
  record_id: rid
  columns:
    rid: {type: string, role: record-id}
    pid: {type: string, role: privacy-unit}
    g: {type: category, categories: [A, B, C]}
    h: {type: string}
    v: {type: integer}
outputs:
OUTPUTS
BUDGET
"""
BUDGET = "budget: {privacy_unit: pid, epsilon: 1.0, max_records_per_unit: 2}"


def policy(outputs: str, budget: str = BUDGET):  # noqa: ANN201
    return parse_policy(BASE.replace("OUTPUTS", outputs).replace("BUDGET", budget), "t.yaml")


def frame(n: int = 400) -> pd.DataFrame:
    return pd.DataFrame({"rid": [f"r{i}" for i in range(n)], "pid": [f"p{i // 2}" for i in range(n)],
                         "g": ["A", "B", "C", "Z"][0:1] * (n // 2) + ["B"] * (n // 2 - 1) + ["Z"],
                         "h": ["x"] * (n - 1) + ["rare"], "v": np.arange(n) % 7})


def build(p, f: pd.DataFrame):  # noqa: ANN001, ANN201
    out = p.outputs[0]
    ctx = StepContext(policy=p, policy_path=None, schema=compile_plan(p).final_schema, release_id="r",
                      now=datetime.now(UTC))
    return out, out.build(f, ctx)


def assess(p, out, tables):  # noqa: ANN001, ANN201
    actx = AssessContext(policy=p, output_name=out.name, files={k: f"{k}.csv" for k in tables})
    figs = out.assess(tables, actx)
    return figs, {f.check: f.ok for f in actx.findings}


def test_dp_output_needs_a_budget() -> None:
    with pytest.raises(PolicyError) as e:
        policy("  - {name: c, kind: dp-table, by: [g], keys: {g: categories}}", budget="")
    assert "need a `budget:` section" in e.value.render()


def test_discovery_needs_delta() -> None:
    with pytest.raises(PolicyError) as e:
        policy("  - {name: c, kind: dp-table, by: [h], keys: {h: discover}}")
    assert "set budget.delta" in e.value.render()


def test_keys_must_match_by() -> None:
    with pytest.raises(PolicyError) as e:
        policy("  - {name: c, kind: dp-table, by: [g, h], keys: {g: categories}}")
    assert "keys must declare exactly the `by` columns" in e.value.render()


def test_public_keys_zeros_included_and_outside_values_create_no_key() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [g], keys: {g: [A, B, C]}, margins: []}")
    out, b = build(p, frame())
    t = b.tables["c"]
    assert t["g"].tolist() == ["A", "B", "C"]  # C has no record but is published; Z is not a key
    assert t["count"].dtype == "Int64" and (t["count"] >= 0).all()
    figs, ok = assess(p, out, b.tables)
    assert figs["dp"]["key_source"] == "public" and figs["dp"]["cells"] == 3
    assert all(ok.values())
    # Tampering: a key removed, a negative value, a non-public key.
    bad = t.iloc[:2].copy()
    assert not assess(p, out, {"c": bad})[1]["dp-keys"]
    neg = t.copy()
    neg.loc[0, "count"] = -3
    assert not assess(p, out, {"c": neg})[1]["dp-integers"]


def test_weights_split_the_budget() -> None:
    p = policy("  - {name: a, kind: dp-table, by: [g], keys: {g: categories}, weight: 3}\n"
               "  - {name: b, kind: dp-table, by: [g], keys: {g: categories}}")
    assert [o.budget()[0]["epsilon"] for o in p.outputs] == [0.75, 0.25]
    assert p.outputs[0].plan_info(compile_plan(p).final_schema)["scale"] == pytest.approx(2 / 0.75)


def test_zcdp_uses_the_discrete_gaussian() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [g], keys: {g: categories}}",
               budget="budget: {privacy_unit: pid, rho: 0.5, max_records_per_unit: 2}")
    out, b = build(p, frame())
    figs, ok = assess(p, out, b.tables)
    assert figs["dp"]["mechanism"] == "discrete gaussian" and figs["dp"]["rho"] == 0.5
    assert figs["dp"]["scale"] == pytest.approx(2.0)  # sigma = 2 / sqrt(2 * 0.5)
    assert all(ok.values())


def test_discovered_keys_never_include_a_rare_value() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [h, g], keys: {h: discover, g: categories}}",
               budget="budget: {privacy_unit: pid, epsilon: 1.0, delta: 1.0e-6, max_records_per_unit: 2}")
    out, b = build(p, frame())
    t = b.tables["c"]
    assert set(t["h"]) == {"x"}  # 399 records pass the threshold, the single 'rare' one cannot
    assert len(t) == 3
    figs, ok = assess(p, out, b.tables)
    assert figs["dp"]["key_source"] == "thresholded" and figs["dp"]["threshold"] >= 2
    assert all(ok.values())


def test_sums_and_margins_and_suppression() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [g, h], keys: {g: categories, h: [x, y]}, margins: [[g]],"
               " statistic: sum, column: v, bounds: [0, 6], value_column: total, suppress_below: 30}")
    out, b = build(p, frame())
    t, m = b.tables["c"], b.tables["c_by_g"]
    assert list(t.columns) == ["g", "h", "total"]
    assert t["total"].isna().any()  # C/x, C/y and */y are tiny: blanked on their noisy values
    assert (t["total"].dropna() >= 30).all()
    figs, ok = assess(p, out, b.tables)
    assert all(ok.values()), ok
    assert figs["dp"]["sensitivity"] == 2 * 6 and "cells with noisy value below 30 blanked" in figs["dp"]["post_processing"]
    wrong = m.copy()
    wrong.loc[0, "total"] = int(wrong.loc[0, "total"]) - 1000
    assert not assess(p, out, {"c": t, "c_by_g": wrong})[1]["dp-margins"]


def test_means_from_noisy_sums_and_counts() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [g], keys: {g: categories}, statistic: mean, column: v,"
               " bounds: [0, 6], value_column: mean_v, suppress_below: 30}")
    out, b = build(p, frame(4000))
    t = b.tables["c"]
    assert t["mean_v"].isna().tolist() == [False, False, True]  # C has no record: its noisy count stays under 30
    assert ((t["mean_v"].dropna() >= 0) & (t["mean_v"].dropna() <= 6)).all()
    assert abs(float(t["mean_v"][0]) - 3.0) < 0.5  # v cycles 0..6: true mean 3
    figs, ok = assess(p, out, b.tables)
    assert all(ok.values()), ok
    d = figs["dp"]
    assert d["statistic"] == "mean" and d["noised_parts"] == 2
    assert d["scale"] == pytest.approx(2 * 6 / 0.5) and d["count_scale"] == pytest.approx(2 / 0.5)
    bad = t.copy()
    bad.loc[0, "mean_v"] = 9.5
    assert not assess(p, out, {"c": bad})[1]["dp-bounds"]


def test_column_codes_map_nulls_and_outside_values_to_minus_one() -> None:
    import numpy as np
    import pandas as pd

    from release.dp.keys import column_codes

    keys = ["b", "a", "true", "1"]
    for s, want in [(pd.Series(["a", None, "b", "z"], dtype="string"), [1, -1, 0, -1]),
                    (pd.Series(["a", None, "b", "z", np.nan], dtype=object), [1, -1, 0, -1, -1]),
                    (pd.Series(["a", None, "b"], dtype="category"), [1, -1, 0]),
                    (pd.Series([True, False, None], dtype="boolean"), [2, -1, -1]),
                    (pd.Series([1, 2, None], dtype="Int64"), [3, -1, -1])]:
        assert column_codes(s, keys).tolist() == want
