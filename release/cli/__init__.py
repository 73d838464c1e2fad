"""The `release` command: one module per command; each parses, calls one library function, renders."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import os
import sys
import traceback
from typing import Any

import click

from release.errors import EXIT_INTERNAL, ReleaseError
from release.textsafe import safe_text

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
                # json.dumps escapes every control character, so the JSON needs no cleaning.
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
            # An exception message may quote a value: the traceback is cleaned like any other text.
            click.echo(safe_text(traceback.format_exc(), multiline=True), err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=ReleaseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="release-engine")
def main() -> None:
    """Privacy-preserving release engine for public-safety open data."""


def _flush_c_stdio() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


class _StdoutForJson:
    """While a --json command runs, file descriptor 1 points at stderr, so C libraries (a solver's
    banner, a native logger) cannot write into the JSON; Python's sys.stdout keeps the real stdout."""

    def __init__(self) -> None:
        self.saved: int | None = None
        self.old_stdout: Any = None

    def enter(self) -> None:
        try:
            if sys.stdout.fileno() != 1:
                return
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            return  # not a real stream (click's test runner): nothing native can reach it
        sys.stdout.flush()
        _flush_c_stdio()
        self.saved = os.dup(1)
        self.old_stdout = sys.stdout
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(self.saved), "wb"), encoding="utf-8",
                                      line_buffering=True)
        os.dup2(2, 1)

    def exit(self) -> None:
        if self.saved is None:
            return
        _flush_c_stdio()
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.saved = None
        with contextlib.suppress(Exception):
            sys.stdout.close()
        sys.stdout = self.old_stdout


def json_option(f: Any) -> Any:
    def cb(ctx: click.Context, _p: click.Parameter, value: bool) -> bool:
        ctx.find_root().meta["json"] = value
        if value:
            guard = _StdoutForJson()
            guard.enter()
            ctx.find_root().call_on_close(guard.exit)
        return value

    return click.option("--json", "as_json", is_flag=True, callback=cb, expose_value=True,
                        help="Print the machine-readable result on stdout.")(f)


def progress_printer(quiet: bool) -> Any:
    def show(msg: str) -> None:
        if not quiet:
            click.echo(f"· {safe_text(msg)}", err=True)

    return show


for _mod in COMMANDS:
    importlib.import_module(_mod).register(main)
