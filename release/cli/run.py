"""`release run POLICY --input PATH --out DIR`: run one release and write one bundle."""

from __future__ import annotations

import json

import click

from release.cli import json_option, progress_printer
from release.engine import run_release
from release.errors import UsageError
from release.geomask.cli import geo_options


def register(group: click.Group) -> None:
    @group.command("run")
    @click.argument("policy", type=click.Path(dir_okay=False))
    @click.option("--input", "input_path", default=None, help="Internal records: CSV or Parquet file, or"
                  " postgresql://HOST:PORT/DB with --table or --query (default: the policy's input.source).")
    @click.option("--table", default=None, metavar="SCHEMA.TABLE", help="With a postgresql:// --input: the table to read.")
    @click.option("--query", "query_file", default=None, type=click.Path(dir_okay=False),
                  help="With a postgresql:// --input: a file holding the SELECT whose rows are the records.")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Publish folder; the bundle goes to OUT/<dataset>/<release-id>/.")
    @click.option("--ledger", type=click.Path(dir_okay=False), default=None, help="DP budget ledger (SQLite); overrides the policy's.")
    @click.option("--network", type=click.Path(dir_okay=False), default=None, help="Street network file; overrides the policy's.")
    @click.option("--addresses", type=click.Path(dir_okay=False), default=None, help="Address points counted per network node.")
    @click.option("--layer", "layers", multiple=True, metavar="NAME=FILE", help="Area polygon layer a geomask step names (repeatable).")
    @click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration (release.toml): approval keyring and requirement.")
    @click.option("--seed", type=int, default=None, help="Fix randomness (test mode only: RELEASE_TEST_MODE=1).")
    @click.option("--engine", type=click.Choice(["local", "spark"]), default=None,
                  help="Runner: local (this process) or spark (release/spark; default: release.toml's [engine] name)."
                  " With spark, --input is Parquet (file or folder) and --table DB.TABLE a Spark catalog table.")
    @click.option("--spark-master", default=None, metavar="URL", help="With --engine spark: the Spark master"
                  " (local[2], spark://HOST:7077, yarn, ...); overrides [engine] master.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
    @json_option
    def run_cmd(policy: str, input_path: str | None, table: str | None, query_file: str | None, out_dir: str, ledger: str | None, network: str | None,
                addresses: str | None, layers: tuple[str, ...], config: str | None, seed: int | None,
                engine: str | None, spark_master: str | None, quiet: bool, as_json: bool) -> None:
        """Run one release of POLICY over the records in --input."""
        options = {k: v for k, v in {"ledger": ledger, "network": network, "config": config, "table": table,
                                     "query_file": query_file}.items() if v is not None}
        options.update(geo_options(addresses, layers))
        runner = run_release
        if engine is not None:
            options["engine"] = engine
        if spark_master is not None:
            options["spark_master"] = spark_master
        from release.spark.runner import engine_of

        if engine_of(options) == "spark":
            from release.spark.runner import run_release_spark

            # On Spark, --table names a table of the Spark catalog (not a PostgreSQL relation).
            if "table" in options:
                options["spark_table"] = options.pop("table")
            runner = run_release_spark
        elif spark_master is not None:
            raise UsageError("--spark-master applies to --engine spark")
        result = runner(policy, input_path, out_dir, options=options, seed=seed,
                        progress=progress_printer(quiet or as_json))
        if as_json:
            click.echo(json.dumps({"bundle": str(result.bundle), "report": result.report}, indent=2, default=str))
        else:
            click.echo(f"{result.verdict}: {result.report['dataset']} release {result.report['release_id']}")
            click.echo(f"bundle: {result.bundle}")
            for o in result.report["outputs"]:
                click.echo(f"  {o['name']} ({o['kind']}): {', '.join(o['files'])}")
