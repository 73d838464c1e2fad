"""`release policy ...`: the policy language's JSON Schema, and signed approval of a policy and its files."""

from __future__ import annotations

from pathlib import Path

import click

from release.geomask.cli import geo_options
from release.policy.loader import policy_json_schema


def _file_opts(f):  # type: ignore[no-untyped-def]
    for opt in reversed([
        click.option("--network", type=click.Path(dir_okay=False), default=None,
                     help="Street network the release reads (else the policy's path or release.toml [files])."),
        click.option("--addresses", type=click.Path(dir_okay=False), default=None, help="Address points file."),
        click.option("--layer", "layers", multiple=True, metavar="NAME=FILE", help="Area polygon layer (repeatable)."),
        click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration file (release.toml)."),
    ]):
        f = opt(f)
    return f


def _options(network: str | None, addresses: str | None, layers: tuple[str, ...], config: str | None) -> dict:
    from release.governance.config import file_options

    opts = {k: v for k, v in {"network": network, "config": config}.items() if v is not None}
    opts.update(geo_options(addresses, layers))
    return file_options(opts)


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
    @click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Approver's Ed25519 private key (PEM).")
    @click.option("--by", "approver", required=True, help="Name of the person or office approving.")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
                  help="Approval file (default: the configured approvals folder, else beside the policy).")
    @_file_opts
    def approve_cmd(policy: str, key_path: str, approver: str, out_path: str | None, network: str | None,
                    addresses: str | None, layers: tuple[str, ...], config: str | None) -> None:
        """Sign POLICY and every file a release of it reads (network, addresses, layers, hierarchies)."""
        from release.governance.approval import approve
        from release.governance.config import load_approval_config

        opts = _options(network, addresses, layers, config)
        cfg = load_approval_config(opts)
        target, st = approve(Path(policy), Path(key_path), approver, out=Path(out_path) if out_path else None,
                             cfg=cfg, options=opts)
        click.echo(f"approved {policy} by {st['approver']} with key {st['key_id']}; the approval covers:")
        for s in st["subjects"]:
            click.echo(f"  {s['kind']:<10} {s['name']:<24} sha256 {s['sha256']}")
        click.echo(f"approval: {target}")

    @policy_group.command("verify")
    @click.argument("policy", type=click.Path(dir_okay=False))
    @_file_opts
    def verify_cmd(policy: str, network: str | None, addresses: str | None, layers: tuple[str, ...],
                   config: str | None) -> None:
        """Check POLICY's approval (and its files) as `release run` would (exit 1 when it would be refused)."""
        from release.governance.approval import check_policy_approval
        from release.governance.trusted import TrustedFiles, read_once
        from release.policy.loader import parse_policy

        opts = _options(network, addresses, layers, config)
        data = read_once(Path(policy), "policy file")
        pol = parse_policy(data.decode("utf-8-sig", errors="replace"), policy)
        trusted = TrustedFiles()
        try:
            rec = check_policy_approval(pol, Path(policy), data, opts, trusted)
        finally:
            trusted.close()
        if rec.get("required"):
            click.echo(f"approved: {policy} by {rec['approver']} (key {rec['key_id']}, {rec['signed_utc']});"
                       f" {len(rec['subjects'])} subject(s) match")
        else:
            click.echo(f"approval turned off by the configuration (required = false): {policy}")
