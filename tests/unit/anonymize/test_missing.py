"""Missing quasi-identifier values: their own category, or matching any value (sdcMicro's rule)."""

from __future__ import annotations

import pandas as pd

from release.anonymize.assess import class_sizes, measure

from .helpers import apply, step

FRAME = pd.DataFrame({"a": ["x", "x", None, "y", "y", None], "b": ["1", "2", "1", "1", None, "3"]})


def test_missing_as_category_forms_its_own_class():
    _, size, ks = class_sizes(FRAME, ["a", "b"], {"a": "category", "b": "category"})
    assert size.tolist() == [1] * 6 and ks.tolist() == [1] * 6


def test_missing_as_any_counts_compatible_records():
    # Row 2 (None, 1) matches (x,1), (y,1) and (y,None); row 5 (None,3) matches (y,None);
    # row 1 (x,2) matches nothing else.
    _, size, ks = class_sizes(FRAME, ["a", "b"], {"a": "any", "b": "any"})
    assert ks.tolist() == [2, 1, 4, 3, 4, 2]
    assert size.tolist() == [1] * 6


def test_step_with_missing_any_publishes_nulls_and_meets_k_on_compatible_counts():
    frame = pd.DataFrame({"a": ["x", "x", None, "y", "y", None, "x", "y"], "b": ["1"] * 8})
    s = step(k=3, quasi_identifiers={"a": {"missing": "any"}, "b": {}})
    out, ev, _ = apply(s, frame)
    assert ev["levels"] == {"a": 0, "b": 0} and ev["suppressed_records"] == 0
    assert out["a"].isna().sum() == 2
    fig = measure(out, ["a", "b"], {"a": "any", "b": "category"}, {}, None, 0.2)
    assert fig["k"] == 5 and "missing_semantics" in fig
    # The same records with missing as its own category need 'a' generalized away.
    out2, ev2, _ = apply(step(k=3, quasi_identifiers={"a": {}, "b": {}}), frame)
    assert ev2["levels"]["a"] == 1 and set(out2["a"]) == {"*"}
