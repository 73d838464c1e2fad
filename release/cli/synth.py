"""`release synth`: write synthetic internal records (crimes, use of force, enforcement actions) for tests and demos."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    @group.command("synth")
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="CSV or Parquet file to write.")
    @click.option("--records", "n", default=20_000, show_default=True, type=click.IntRange(1, 50_000_000))
    @click.option("--kind", type=click.Choice(["crimes", "use-of-force", "enforcement"]), default="crimes", show_default=True)
    @click.option("--seed", type=int, default=11, show_default=True, help="Synthetic data only: fixes the fake records.")
    @click.option("--network-out", type=click.Path(file_okay=False), default=None,
                  help="Also write the demo street network (nodes, addresses, streets, areas) here.")
    def synth_cmd(out_path: str, n: int, kind: str, seed: int, network_out: str | None) -> None:
        """Write N synthetic internal records (with direct identifiers) to OUT."""
        from release.synth import (
            demo_city,
            synth_crimes,
            synth_enforcement,
            synth_use_of_force,
            write_records,
        )

        if kind == "enforcement":
            df = synth_enforcement(n, seed=seed)
        elif kind == "crimes":
            city = demo_city()
            df = synth_crimes(n, city, seed=seed)
            if network_out:
                city.write(Path(network_out))
        else:
            df = synth_use_of_force(n, seed=seed)
            if network_out:
                demo_city().write(Path(network_out))
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        write_records(df, Path(out_path))
        click.echo(f"wrote {len(df):,} synthetic {kind} records to {out_path}")
