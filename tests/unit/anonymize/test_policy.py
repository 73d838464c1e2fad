"""Policy-level errors of the k-anonymity step: located, exit-2 errors before any record is read."""

from __future__ import annotations

import copy

import pytest
import yaml

from release.errors import PolicyError
from release.policy.loader import parse_policy
from tests.conftest import POLICIES


def arrests() -> dict:
    return yaml.safe_load((POLICIES / "arrests-strip-search.yaml").read_text())


def step_of(p: dict) -> dict:
    return next(s for s in p["steps"] if s["type"] == "k-anonymity")


def test_bundled_policy_parses():
    p = parse_policy((POLICIES / "arrests-strip-search.yaml").read_text(), "arrests")
    assert any(s.type == "k-anonymity" for s in p.steps)


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.update(k=1), "k"),
    (lambda s: s["quasi_identifiers"].update(gender={"time": ["month"]}), "time hierarchy"),
    (lambda s: s["quasi_identifiers"].update(gender={"widths": [5]}), "numeric hierarchy"),
    (lambda s: s["quasi_identifiers"].update(nope={}), "nope"),
    (lambda s: s.update(levels={"gender": 0}), "levels"),
    (lambda s: s["sensitive"].update(arrest={"l": 2, "model": "recursive"}), "recursive"),
    (lambda s: s.update(weights={"arrest": 2}), "weights"),
    (lambda s: s.update(max_suppression=1.5), "max_suppression"),
])
def test_bad_step_settings_are_policy_errors(edit, needle):
    p = copy.deepcopy(arrests())
    edit(step_of(p))
    with pytest.raises(PolicyError) as e:
        parse_policy(yaml.safe_dump(p, sort_keys=False), "arrests.yaml")
    assert needle in e.value.render()
