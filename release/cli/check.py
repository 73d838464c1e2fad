"""`release check BUNDLE`: re-verify a bundle from its files; exit 1 on any failed finding."""

from __future__ import annotations

import json

import click

from release.check import check_bundle
from release.cli import json_option
from release.geomask.cli import geo_options
from release.textsafe import safe_text


def register(group: click.Group) -> None:
    @group.command("check")
    @click.argument("bundle", type=click.Path(file_okay=False))
    @click.option("--network", type=click.Path(dir_okay=False), default=None, help="Street network to prove snap points against.")
    @click.option("--addresses", type=click.Path(dir_okay=False), default=None, help="Address points the network's counts came from.")
    @click.option("--layer", "layers", multiple=True, metavar="NAME=FILE", help="Area polygon layer a geomask step names (repeatable).")
    @click.option("--ledger", type=click.Path(dir_okay=False), default=None, help="DP ledger to compare spends against.")
    @click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write the findings as JUnit XML to this file.")
    @click.option("--github", is_flag=True, help="Print GitHub Actions ::error annotations for failed findings.")
    @click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration (release.toml): trusted approval keys.")
    @json_option
    def check_cmd(bundle: str, network: str | None, addresses: str | None, layers: tuple[str, ...], ledger: str | None,
                  junit: str | None, github: bool, config: str | None, as_json: bool) -> None:
        """Recompute every figure of BUNDLE from its published files and compare with its policy."""
        from release.governance.gate import write_gate_outputs

        options = {k: v for k, v in {"network": network, "ledger": ledger, "config": config}.items() if v is not None}
        options.update(geo_options(addresses, layers))
        result = check_bundle(bundle, options=options)
        write_gate_outputs([(bundle, result.findings)], junit, github, click.echo)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, default=str))
        else:
            for f in result.findings:
                where = " ".join(x for x in (f.output, f.file) if x)
                click.echo(safe_text(f"{'ok  ' if f.ok else 'FAIL'} [{f.check}] {where + ': ' if where else ''}{f.message}"))
            click.echo(safe_text(f"{'pass' if result.ok else 'FAILED'}: {bundle}"))
        if not result.ok:
            raise SystemExit(1)
