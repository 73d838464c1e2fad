"""Registries of step types, output kinds, assessors and hooks; plug-ins register on import."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from release.errors import InternalError

STEPS: dict[str, type] = {}
OUTPUTS: dict[str, type] = {}
ASSESSORS: dict[str, list[Callable[..., dict[str, Any]]]] = {}
"output kind -> functions(output_config, tables, AssessContext) -> figures (add findings to ctx)"
BUNDLE_CHECKS: list[Callable[..., list[Any]]] = []
"functions(policy, bundle_dir, manifest, report, options) -> list[Finding] for `release check`"
FOLDER_CHECKS: list[Callable[..., list[Any]]] = []
"""functions(folder, bundles: list[Path], options) -> list[Finding] for `release check-all`: checks across the
bundles of a publication folder (budget re-count, linkage); `bundles` are those whose signature verified"""
PRE_RUN: list[Callable[..., None]] = []
"functions(policy, policy_path, options) run before any record is read (e.g. approval)"
PLAN_CHECKS: list[Callable[..., None]] = []
"""functions(policy, policy_path, options) run by `release plan` with no record read: every file a
step references exists, loads and validates (networks, layers, hierarchies); raise a ReleaseError"""
PRE_OUTPUT: list[Callable[..., None]] = []
"functions(policy, ctx) run after the steps and before any output is built (e.g. budget)"
POST_BUNDLE: list[Callable[..., None]] = []
"functions(policy, ctx, bundle_dir) run after a bundle is in place (e.g. ledger commit note)"
REFERENCED_FILES: list[Callable[..., list[tuple[str, str, Any]]]] = []
"""functions(policy, policy_path, options) -> [(name, kind, path)]: every file besides the records a
release will read (network, addresses, area layers, hierarchies); the approval must cover each one"""
PRE_PUBLISH: list[Callable[..., None]] = []
"""functions(policy, ctx, report, files, internal_dir, internal) run before the bundle is renamed into place
(e.g. the internal report): a failure there publishes nothing"""
RENDERERS: list[Callable[..., dict[str, bytes]]] = []
"""functions(report, files, ctx) -> extra bundle files (relative path -> bytes), e.g. report.html;
files holds the bundle files written so far (relative path -> bytes)"""

# Modules that register steps/outputs. One line per plug-in; the core never names them otherwise.
PLUGINS: list[str] = [
    "release.steps.drop",
    "release.steps.pseudonymize",
    "release.steps.generalize",
    "release.steps.filter",
    "release.outputs.records",
    "release.anonymize.step",
    "release.anonymize.files",
    "release.anonymize.plancheck",
    "release.geomask.plugins",
    "release.dp.table",
    "release.dp.hooks",
    "release.governance.linkage",
    "release.governance.hooks",
    "release.report.render",
    "release.tables.output",
    "release.indices.output",
    "release.outputs.identifier_scan",
    "release.outputs.cells",
    "release.series.hooks",
    # Last: its demo hook adds [ledger] and [sources] to the release.toml the governance demo hook wrote.
    "release.dp.demo",
]

_loaded = False


def register_step(cls: type) -> type:
    t = cls.model_fields["type"].default
    if not t or t in STEPS:
        raise InternalError(f"step type {t!r} registered twice or without a default (this is a bug)")
    STEPS[t] = cls
    return cls


def register_output(cls: type) -> type:
    k = cls.model_fields["kind"].default
    if not k or k in OUTPUTS:
        raise InternalError(f"output kind {k!r} registered twice or without a default (this is a bug)")
    OUTPUTS[k] = cls
    return cls


def register_assessor(kind: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def deco(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        ASSESSORS.setdefault(kind, []).append(fn)
        return fn

    return deco


def add_hook(hooks: list[Any], fn: Any, *, first: bool = False) -> None:
    """Register a hook once (a re-imported plug-in must not run twice); `first` puts it ahead of the others."""
    if fn in hooks:
        return
    if first:
        hooks.insert(0, fn)
    else:
        hooks.append(fn)


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in PLUGINS:
        importlib.import_module(mod)
