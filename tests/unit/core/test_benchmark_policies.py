"""The benchmarks' own policies stay valid as the policy rules grow (a benchmark that stops at its
policy measures nothing)."""

from __future__ import annotations

import pytest

from release.policy.loader import parse_policy


@pytest.mark.parametrize("unit", ["person_id", "record_id"])
def test_bench_dp_policy_parses(unit: str) -> None:
    from benchmarks.bench_dp import POLICY

    policy = parse_policy(POLICY.replace("UNIT", unit), "bench-dp.yaml")
    assert policy.budget is not None and policy.budget.privacy_unit == unit
    assert policy.outputs[0].kind == "dp-table"
