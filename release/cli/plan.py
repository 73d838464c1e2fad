"""`release plan POLICY`: validate a policy and print what a run would do, reading no record."""

from __future__ import annotations

import json

import click

from release.cli import json_option
from release.geomask.cli import geo_options
from release.plan import check_referenced_files, compile_plan
from release.policy.loader import load_policy
from release.textsafe import safe_text


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
    @click.option("--network", type=click.Path(dir_okay=False), default=None, help="Street network file a run would get.")
    @click.option("--addresses", type=click.Path(dir_okay=False), default=None, help="Address points a run would get.")
    @click.option("--layer", "layers", multiple=True, metavar="NAME=FILE", help="Area polygon layer a run would get (repeatable).")
    @json_option
    def plan_cmd(policy: str, network: str | None, addresses: str | None, layers: tuple[str, ...], as_json: bool) -> None:
        """Validate POLICY and every file it names, and print its plan, without reading records."""
        pol = load_policy(policy)
        plan = compile_plan(pol)
        options = {"network": network} if network else {}
        options.update(geo_options(addresses, layers))
        check_referenced_files(pol, policy, options)
        if as_json:
            click.echo(json.dumps(plan.to_json(), indent=2, default=str))
        else:
            # Policy text (column names, descriptions) is printed cleaned, one line at a time.
            click.echo("\n".join(safe_text(line) for line in render_plan(plan.to_json()).splitlines()))
