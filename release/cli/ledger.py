"""`release ledger show|verify|migrate`: the DP budget ledger's spends per source, its chain, old ledgers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from release.cli import json_option
from release.dp import ledger as L
from release.errors import UsageError


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _path(path: str | None, config: str | None) -> Path:
    """--ledger, else the configuration's [ledger] path."""
    if path:
        return Path(path)
    from release.dp.sources import load_budget_config

    cfg = load_budget_config({"config": config} if config else {})
    if cfg.ledger is None:
        raise UsageError(f"{cfg.where()} names no ledger: give --ledger or `[ledger] path` in release.toml")
    return cfg.ledger


def register(group: click.Group) -> None:
    @group.group("ledger")
    def ledger_group() -> None:
        """Inspect, verify or migrate the differential-privacy budget ledger."""

    ledger_opt = click.option("--ledger", "path", default=None, type=click.Path(dir_okay=False),
                              help="SQLite ledger file (default: release.toml [ledger] path).")
    config_opt = click.option("--config", default=None, type=click.Path(dir_okay=False),
                              help="Configuration (release.toml) naming the ledger and the sources.")

    @ledger_group.command("show")
    @ledger_opt
    @config_opt
    @click.option("--source", default=None, help="Only this source.")
    @json_option
    def show_cmd(path: str | None, config: str | None, source: str | None, as_json: bool) -> None:
        """List every spend (release, source, budget, time) and what is left per source and unit."""
        p = _path(path, config)
        spends = L.history(p, source)
        summary = L.summary(p, datetime.now(UTC), source)
        if as_json:
            click.echo(json.dumps({"ledger": str(p), "spends": spends, "sources": summary}, indent=2))
            return
        click.echo(f"ledger {p}: {len(spends)} spend(s)")
        click.echo(f"{'#':>4} {'time (UTC)':<27} {'source (unit)':<32} {'dataset':<24} {'release':<26} "
                   f"{'epsilon':>9} {'rho':>9} {'delta':>9}")
        for s in spends:
            click.echo(f"{s['seq']:>4} {s['created_utc'][:26]:<27} {s['source'] + ' (' + s['unit'] + ')':<32} "
                       f"{s['dataset']:<24} {s['release_id']:<26} {_fmt(s['epsilon']):>9} {_fmt(s['rho']):>9} "
                       f"{_fmt(s['delta']):>9}")
        click.echo("")
        for d in summary:
            parts = []
            for m in L.MEASURES:
                cap = d["caps"]["per_period"].get(m)
                if cap is not None:
                    parts.append(f"{m} {_fmt(d['spent_in_period'][m])} of {_fmt(cap)} spent,"
                                 f" {_fmt(d['left_in_period'][m])} left")
            click.echo(f"{d['source']} (unit {d['unit']}): {d['releases']} release(s); last "
                       f"{d['period_days']} days: " + ("; ".join(parts) or "no period cap"))

    @ledger_group.command("verify")
    @ledger_opt
    @config_opt
    @click.option("--out", "folder", default=None, type=click.Path(file_okay=False),
                  help="Publication folder whose bundles' spends the ledger must hold.")
    @json_option
    def verify_cmd(path: str | None, config: str | None, folder: str | None, as_json: bool) -> None:
        """Verify the hash chain (and that every bundle under --out has its spend in the ledger); exit 1 if not."""
        from release.dp.hooks import published_spends

        p = _path(path, config)
        lid, entries, problems = L.read(p)
        missing = L.missing_spends(entries, lid, published_spends(Path(folder))) if folder else []
        result: dict[str, Any] = {"ledger": str(p), "ledger_id": lid, "entries": len(entries),
                                  "head": entries[-1]["hash"] if entries else L.genesis_hash(lid),
                                  "chain_problems": problems, "missing_spends": missing}
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            for x in problems + missing:
                click.echo(f"FAIL {x}")
            click.echo(f"{'ok' if not problems and not missing else 'FAILED'}: {p}, {len(entries)} entries, head"
                       f" {result['head'][:16]}…")
        if problems or missing:
            raise SystemExit(1)

    @ledger_group.command("migrate")
    @ledger_opt
    @config_opt
    @click.option("--map", "maps", multiple=True, metavar="DATASET=SOURCE", required=True,
                  help="The registered source each old dataset's spends belong to (repeatable).")
    def migrate_cmd(path: str | None, config: str | None, maps: tuple[str, ...]) -> None:
        """Re-key an old per-dataset ledger by source and privacy unit, and chain it (once)."""
        from release.dp.sources import load_budget_config

        cfg = load_budget_config({"config": config} if config else {})
        mapping: dict[str, tuple[str, str]] = {}
        for m in maps:
            ds, _, src = m.partition("=")
            if not ds or not src:
                raise UsageError(f"--map {m!r}: expected DATASET=SOURCE")
            if src not in cfg.sources:
                raise UsageError(f"--map {m!r}: source {src!r} is not registered in {cfg.where()}")
            mapping[ds] = (src, cfg.sources[src].unit)
        p = _path(path, config)
        n = L.migrate(p, mapping)
        click.echo(f"{p}: {n} old release(s) re-keyed by source and chained" if n else f"{p}: nothing to migrate")
