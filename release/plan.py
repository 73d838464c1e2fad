"""Compile a policy into a plan against its declared input schema, before any record is read."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from release.policy.base import Role, Schema
from release.policy.models import Policy


@dataclass
class Plan:
    """What a run will do: steps in order, outputs with their published columns, DP spends."""

    dataset: str
    steps: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    budget: dict[str, Any] | None
    gate: dict[str, Any]
    schemas: list[Schema] = field(default_factory=list, repr=False)
    "schema before step i (the last one: after every step)"

    @property
    def final_schema(self) -> Schema:
        return self.schemas[-1]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "steps": self.steps, "outputs": self.outputs,
                "budget": self.budget, "gate": self.gate}


def _locate(model: Any, column: str) -> tuple[Any, ...]:
    """The key (and index) inside a step or output where a column name is written."""
    for name in type(model).model_fields:
        v = getattr(model, name)
        if v == column:
            return (name,)
        if isinstance(v, (tuple, list)) and column in v:
            return (name, list(v).index(column))
        if hasattr(type(v), "model_fields"):
            inner = _locate(v, column)
            if inner:
                return (name, *inner)
    return ()


def _near(column: str, schema: Iterable[str]) -> str:
    near = difflib.get_close_matches(column, list(schema), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def check_policy_columns(policy: Policy) -> list[tuple[tuple[Any, ...], str]]:
    """Every column a step or output names must exist at that point of the plan."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    schema: Schema = dict(policy.input.columns)
    for i, step in enumerate(policy.steps):
        for c in step.referenced_columns():
            if c not in schema:
                problems.append((("steps", i, *_locate(step, c)), f"column {c!r} is not in the schema at this step"
                                 f" (declared in input.columns or made by an earlier step?){_near(c, schema)}"))
        if not problems:
            try:
                schema = step.schema_after(schema)
            except (KeyError, ValueError) as e:
                problems.append((("steps", i), f"cannot apply to the schema: {e}"))
    if problems:
        return problems
    for j, out in enumerate(policy.outputs):
        for c in out.referenced_columns():
            if c not in schema:
                problems.append((("outputs", j, *_locate(out, c)),
                                 f"column {c!r} is not in the schema after the steps{_near(c, schema)}"))
        if not problems:
            for c in out.published_columns(schema):
                if c in schema and schema[c].role == Role.direct_identifier:
                    problems.append((("outputs", j), f"column {c!r} is a direct identifier and may not be published;"
                                     " drop or pseudonymize it first"))
    published = {c for out in policy.outputs for c in out.published_columns(schema)}
    for c in policy.gate.identifier_scan_waivers:
        if c not in published:
            problems.append((("gate", "identifier_scan_waivers", c), f"column {c!r} is not published by any output"
                             f"{_near(c, published)}"))
    if policy.budget is not None and policy.budget.privacy_unit not in policy.input.columns:
        problems.append((("budget", "privacy_unit"), f"column {policy.budget.privacy_unit!r} is not a declared input"
                         f" column{_near(policy.budget.privacy_unit, policy.input.columns)}"))
    return problems


def compile_plan(policy: Policy) -> Plan:
    """The plan a run executes; pure, reads no record (the policy is already column-checked)."""
    schemas: list[Schema] = [dict(policy.input.columns)]
    steps = []
    for i, step in enumerate(policy.steps):
        steps.append({"index": i, "type": step.type, "describe": step.describe(),
                      **step.plan_info(schemas[-1])})
        schemas.append(step.schema_after(schemas[-1]))
    final = schemas[-1]
    outputs = []
    for out in policy.outputs:
        outputs.append({"name": out.name, "kind": out.kind,
                        "columns": out.published_columns(final), **out.plan_info(final)})
    budget = None
    spends = [s for o in policy.outputs for s in o.budget()]
    if policy.budget is not None or spends:
        budget = {"spends": spends, **(policy.budget.model_dump(mode="json") if policy.budget else {})}
    gate = {k: v for k, v in policy.gate.model_dump(mode="json").items() if v is not None}
    return Plan(dataset=policy.dataset.name, steps=steps, outputs=outputs, budget=budget, gate=gate,
                schemas=schemas)


def check_referenced_files(policy: Policy, policy_path: Any, options: dict[str, Any] | None = None) -> None:
    """Run every plan check (files a step names: they exist, load and validate); raise one error listing all.

    `release plan` calls this with the options a run would get (--network, --addresses, --layer), so
    a missing or broken file fails in the plan, not in the run after the records are read.
    """
    from pathlib import Path

    from release import registry
    from release.errors import PolicyError, ReleaseError

    problems: list[str] = []
    exit_code = 2
    for check in registry.PLAN_CHECKS:
        try:
            check(policy, Path(policy_path) if policy_path is not None else None, dict(options or {}))
        except ReleaseError as e:
            problems.append(e.message)
            problems.extend(f"  {d}" for d in e.details)
            exit_code = e.exit_code
    if problems:
        err = PolicyError(f"{policy_path}: {len([p for p in problems if not p.startswith('  ')])} referenced"
                          " file problem(s); a run would fail the same way", details=problems)
        err.exit_code = exit_code
        raise err
