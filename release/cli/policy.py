"""`release policy ...`: the policy language's JSON Schema (and, with governance, approval)."""

from __future__ import annotations

import click

from release.policy.loader import policy_json_schema


def register(group: click.Group) -> None:
    @group.group("policy")
    def policy_group() -> None:
        """Work with policy files."""

    @policy_group.command("schema")
    def schema_cmd() -> None:
        """Print the JSON Schema of the policy language (for editors)."""
        click.echo(policy_json_schema())
