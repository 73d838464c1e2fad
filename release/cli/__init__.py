"""The `release` command: one module per command; each parses, calls one library function, renders."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from typing import Any

import click

from release.errors import EXIT_INTERNAL, ReleaseError

# Command modules; each defines `register(group)`. Plug-ins add one line here.
COMMANDS = [
    "release.cli.synth",
    "release.cli.plan",
    "release.cli.run",
    "release.cli.check",
    "release.cli.demo",
    "release.cli.policy",
    "release.cli.keygen",
    "release.cli.check_all",
    "release.cli.ledger",
]


class ReleaseGroup(click.Group):
    """Turns user errors into a message and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReleaseError as e:
            as_json = bool(ctx.meta.get("json"))
            if as_json:
                payload = e.to_json()
                rep = getattr(e, "report", None)
                if rep is not None:
                    payload["report"] = rep
                click.echo(json.dumps(payload, indent=2, default=str))
            click.echo(e.render(), err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was published", err=True)
            ctx.exit(130)
        except Exception:  # noqa: BLE001 - the one place bugs are reported as bugs
            click.echo("internal error (this is a bug in the release engine, not in your policy or data):", err=True)
            traceback.print_exc(file=sys.stderr)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=ReleaseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="release-engine")
def main() -> None:
    """Privacy-preserving release engine for public-safety open data."""


def json_option(f: Any) -> Any:
    def cb(ctx: click.Context, _p: click.Parameter, value: bool) -> bool:
        ctx.find_root().meta["json"] = value
        return value

    return click.option("--json", "as_json", is_flag=True, callback=cb, expose_value=True,
                        help="Print the machine-readable result on stdout.")(f)


def progress_printer(quiet: bool) -> Any:
    def show(msg: str) -> None:
        if not quiet:
            click.echo(f"· {msg}", err=True)

    return show


for _mod in COMMANDS:
    importlib.import_module(_mod).register(main)
