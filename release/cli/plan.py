"""`release plan POLICY`: validate a policy and print what a run would do, reading no record."""

from __future__ import annotations

import json

import click

from release.cli import json_option
from release.engine import plan_policy


def render_plan(plan_json: dict) -> str:
    lines = [f"plan for dataset {plan_json['dataset']}", "", "steps:"]
    if not plan_json["steps"]:
        lines.append("  (none)")
    for s in plan_json["steps"]:
        extra = {k: v for k, v in s.items() if k not in ("index", "type", "describe")}
        lines.append(f"  {s['index'] + 1}. [{s['type']}] {s['describe']}" + (f"  {extra}" if extra else ""))
    lines += ["", "outputs:"]
    for o in plan_json["outputs"]:
        lines.append(f"  - {o['name']} ({o['kind']}): publishes {', '.join(o['columns'])}")
        for k, v in o.items():
            if k not in ("name", "kind", "columns"):
                lines.append(f"      {k}: {v}")
    if plan_json.get("budget"):
        lines += ["", f"budget: {plan_json['budget']}"]
    if plan_json.get("gate"):
        lines += ["", "gate: " + ", ".join(f"{k}={v}" for k, v in plan_json["gate"].items())]
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.command("plan")
    @click.argument("policy", type=click.Path(dir_okay=False))
    @json_option
    def plan_cmd(policy: str, as_json: bool) -> None:
        """Validate POLICY and print its plan (steps, outputs, published columns) without reading records."""
        plan = plan_policy(policy)
        if as_json:
            click.echo(json.dumps(plan.to_json(), indent=2, default=str))
        else:
            click.echo(render_plan(plan.to_json()))
