"""`release check-all DIR`: every bundle under a publication folder verified; anything else there fails."""

from __future__ import annotations

import json
from pathlib import Path

import click

from release.cli import json_option
from release.cli.check import finding_line, options_of, verdict_word, verifier_options
from release.textsafe import safe_text


def register(group: click.Group) -> None:
    @group.command("check-all")
    @click.argument("folder", type=click.Path(file_okay=False, exists=True))
    @verifier_options
    @json_option
    def check_all_cmd(folder: str, network: str | None, addresses: str | None, layers: tuple[str, ...],
                      ledger: str | None, config: str | None, allow_unapproved: bool, allow_legacy: bool,
                      junit: str | None, github: bool, as_json: bool) -> None:
        """Check every bundle under FOLDER; exit 1 when any bundle fails or anything else is there (a publication gate)."""
        from release.governance.gate import check_folder, write_gate_outputs

        options = options_of(network, addresses, layers, ledger, config, allow_unapproved, allow_legacy)
        results, strays = check_folder(Path(folder), options)
        rows = [(str(r.bundle), r.findings) for r in results] + ([(folder, strays)] if strays else [])
        write_gate_outputs(rows, junit, github, click.echo)
        ok = all(r.ok for r in results) and not strays and bool(results)
        if as_json:
            click.echo(json.dumps({"folder": folder, "ok": ok, "bundles": [r.to_json() for r in results],
                                   "folder_findings": [f.to_json() for f in strays]}, indent=2, default=str))
        else:
            for f in strays:
                click.echo(safe_text(finding_line(f)))
            for r in results:
                for f in r.findings:
                    if not f.ok:
                        click.echo(safe_text(f"{r.bundle}: {finding_line(f)}"))
                click.echo(safe_text(f"{'pass  ' if r.ok else 'FAILED'} {r.bundle} ({verdict_word(r)})"))
            failed = sum(not r.ok for r in results)
            click.echo(f"{len(results)} bundle(s) checked, {failed} failed" +
                       (f"; {len(strays)} problem(s) with the folder itself" if strays else ""))
        if not ok:
            raise SystemExit(1)
