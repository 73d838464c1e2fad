"""`release check BUNDLE`: verify a bundle in stages from its files; exit 1 on any failed or skipped finding."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from release.check import CheckResult, check_bundle
from release.cli import json_option
from release.geomask.cli import geo_options
from release.textsafe import safe_text


def verifier_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `check` and `check-all`: the files and trust the verifier brings."""
    for opt in reversed([
        click.option("--network", type=click.Path(dir_okay=False), default=None,
                     help="Street network the snap points are proved against (else release.toml [files])."),
        click.option("--addresses", type=click.Path(dir_okay=False), default=None,
                     help="Address points the network's counts came from (else release.toml [files])."),
        click.option("--layer", "layers", multiple=True, metavar="NAME=FILE",
                     help="Area polygon layer a geomask step names (repeatable; else release.toml [files.layers])."),
        click.option("--ledger", type=click.Path(dir_okay=False), default=None, help="DP ledger to compare spends against."),
        click.option("--config", type=click.Path(dir_okay=False), default=None,
                     help="Configuration (release.toml): the trusted release and approver keyrings, the files."),
        click.option("--allow-unapproved", is_flag=True,
                     help="Accept bundles released with approval turned off (they fail by default)."),
        click.option("--allow-legacy", is_flag=True,
                     help="Check unsigned bundles published before bundles were signed (they fail by default)."),
        click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write the findings as JUnit XML."),
        click.option("--github", is_flag=True, help="Print GitHub Actions ::error annotations for failed findings."),
    ]):
        f = opt(f)
    return f


def options_of(network: str | None, addresses: str | None, layers: tuple[str, ...], ledger: str | None,
               config: str | None, allow_unapproved: bool, allow_legacy: bool) -> dict[str, Any]:
    options: dict[str, Any] = {k: v for k, v in {"network": network, "ledger": ledger, "config": config}.items()
                               if v is not None}
    options.update(geo_options(addresses, layers))
    options.update(allow_unapproved=allow_unapproved, allow_legacy=allow_legacy)
    return options


def finding_line(f: Any) -> str:
    where = " ".join(x for x in (f.output, f.file) if x)
    label = {"pass": "ok  ", "fail": "FAIL", "skipped": "skip"}[f.status]
    return f"{label} [{f.check}] {where + ': ' if where else ''}{f.message}"


def verdict_word(r: CheckResult) -> str:
    if r.ok:
        return "pass"
    return "integrity only (not a pass)" if r.trust == "integrity-only" else "FAILED"


def register(group: click.Group) -> None:
    @group.command("check")
    @click.argument("bundle", type=click.Path(file_okay=False))
    @verifier_options
    @click.option("--exact-audit", is_flag=True,
                  help="Tables: every suppressed cell's exact LP interval, also in large components "
                       "(by default those prove the required width; slower).")
    @json_option
    def check_cmd(bundle: str, network: str | None, addresses: str | None, layers: tuple[str, ...],
                  ledger: str | None, config: str | None, allow_unapproved: bool, allow_legacy: bool,
                  junit: str | None, github: bool, exact_audit: bool, as_json: bool) -> None:
        """Verify BUNDLE: signature, hashes, approval, then every published file against its policy."""
        from release.governance.gate import write_gate_outputs

        options = options_of(network, addresses, layers, ledger, config, allow_unapproved, allow_legacy)
        if exact_audit:
            options["exact_audit"] = True
        result = check_bundle(bundle, options=options)
        write_gate_outputs([(bundle, result.findings)], junit, github, click.echo)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, default=str))
        else:
            for f in result.findings:
                click.echo(safe_text(finding_line(f)))
            click.echo(safe_text(f"{verdict_word(result)}: {bundle}"))
        if not result.ok:
            raise SystemExit(1)
