"""`release policy ...`: the policy language's JSON Schema, and signed approval of a policy."""

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

    @policy_group.command("approve")
    @click.argument("policy", type=click.Path(dir_okay=False))
    @click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Ed25519 private key (PEM).")
    @click.option("--by", "approver", required=True, help="Name of the person or office approving.")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
                  help="Approval file (default: the configured approvals folder, else beside the policy).")
    @click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration file (release.toml).")
    def approve_cmd(policy: str, key_path: str, approver: str, out_path: str | None, config: str | None) -> None:
        """Sign POLICY's content hash as approved by --by."""
        from pathlib import Path

        from release.governance.approval import approve
        from release.governance.config import load_approval_config

        cfg = load_approval_config({"config": config} if config else None)
        target, doc = approve(Path(policy), Path(key_path), approver, out=Path(out_path) if out_path else None, cfg=cfg)
        click.echo(f"approved {policy} (content sha256 {doc['policy_sha256']}) by {doc['approver']} "
                   f"with key {doc['key_id']}")
        click.echo(f"approval: {target}")

    @policy_group.command("verify")
    @click.argument("policy", type=click.Path(dir_okay=False))
    @click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration file (release.toml).")
    def verify_cmd(policy: str, config: str | None) -> None:
        """Check POLICY's approval as `release run` would (exit 1 when it would be refused)."""
        from pathlib import Path

        from release.governance.approval import check_policy_approval

        rec = check_policy_approval(Path(policy), {"config": config} if config else None)
        if rec.get("required"):
            click.echo(f"approved: {policy} by {rec['approver']} (key {rec['key_id']}, {rec['signed_utc']})")
        else:
            click.echo(f"approval not required by the configuration: {policy}")
