"""`release ledger show`: the DP budget ledger's spends and what each dataset has left."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from release.cli import json_option
from release.dp import ledger as L


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def register(group: click.Group) -> None:
    @group.group("ledger")
    def ledger_group() -> None:
        """Inspect the differential-privacy budget ledger."""

    @ledger_group.command("show")
    @click.option("--ledger", "path", default="ledger.sqlite", show_default=True, type=click.Path(dir_okay=False),
                  help="SQLite ledger file.")
    @click.option("--dataset", default=None, help="Only this dataset.")
    @json_option
    def show_cmd(path: str, dataset: str | None, as_json: bool) -> None:
        """List every spend (release id, output, budget, time) and what is left per dataset."""
        p = Path(path)
        spends = L.history(p, dataset)
        summary = L.summary(p, datetime.now(UTC), dataset)
        if as_json:
            click.echo(json.dumps({"ledger": str(p), "spends": spends, "datasets": summary}, indent=2))
            return
        click.echo(f"ledger {p}: {len(spends)} spend(s)")
        click.echo(f"{'time (UTC)':<27} {'dataset':<24} {'release':<26} {'output':<24} {'mech':<9} "
                   f"{'epsilon':>9} {'rho':>9} {'delta':>9}")
        for s in spends:
            click.echo(f"{s['created_utc'][:26]:<27} {s['dataset']:<24} {s['release_id']:<26} {s['output']:<24} "
                       f"{s['mechanism']:<9} {_fmt(s['epsilon']):>9} {_fmt(s['rho']):>9} {_fmt(s['delta']):>9}")
        click.echo("")
        for d in summary:
            parts = []
            for m in L.MEASURES:
                cap = d["caps"]["per_period"].get(m)
                if cap is not None:
                    parts.append(f"{m} {_fmt(d['spent_in_period'][m])} of {_fmt(cap)} spent,"
                                 f" {_fmt(d['left_in_period'][m])} left")
            click.echo(f"{d['dataset']} (unit {d['privacy_unit']}): {d['releases']} release(s); last "
                       f"{d['period_days']} days: " + ("; ".join(parts) or "no period cap"))
