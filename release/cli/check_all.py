"""`release check-all DIR`: run `release check` on every bundle under a publication folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from release.cli import json_option
from release.textsafe import safe_text


def register(group: click.Group) -> None:
    @group.command("check-all")
    @click.argument("folder", type=click.Path(file_okay=False, exists=True))
    @click.option("--network", type=click.Path(dir_okay=False), default=None, help="Street network to prove snap points against.")
    @click.option("--ledger", type=click.Path(dir_okay=False), default=None, help="DP ledger to compare spends against.")
    @click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write every bundle's findings as JUnit XML.")
    @click.option("--github", is_flag=True, help="Print GitHub Actions ::error annotations for failed findings.")
    @click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration (release.toml): trusted approval keys.")
    @json_option
    def check_all_cmd(folder: str, network: str | None, ledger: str | None, junit: str | None, github: bool,
                      config: str | None, as_json: bool) -> None:
        """Check every bundle under FOLDER; exit 1 when any bundle fails (a publication gate)."""
        from release.check import check_bundle
        from release.governance.gate import find_bundles, write_gate_outputs

        options = {k: v for k, v in {"network": network, "ledger": ledger, "config": config}.items() if v is not None}
        bundles = find_bundles(Path(folder))
        results = [check_bundle(b, options=options) for b in bundles]
        write_gate_outputs([(str(r.bundle), r.findings) for r in results], junit, github, click.echo)
        if as_json:
            click.echo(json.dumps({"folder": folder, "ok": all(r.ok for r in results),
                                   "bundles": [r.to_json() for r in results]}, indent=2, default=str))
        else:
            for r in results:
                for f in r.findings:
                    if not f.ok:
                        where = " ".join(x for x in (f.output, f.file) if x)
                        click.echo(safe_text(f"FAIL [{f.check}] {r.bundle}: {where + ': ' if where else ''}{f.message}"))
                click.echo(safe_text(f"{'pass  ' if r.ok else 'FAILED'} {r.bundle}"))
            failed = sum(not r.ok for r in results)
            click.echo(f"{len(results)} bundle(s) checked, {failed} failed")
        if not all(r.ok for r in results):
            raise SystemExit(1)
