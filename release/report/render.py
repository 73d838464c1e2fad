"""Registers the report with the engine: report.html in every bundle, an internal report beside the bundles."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from release import registry
from release.report.audit import report_html_check


@lru_cache(maxsize=4)
def _areas(path: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _area_layer(options: dict[str, Any], ctx: Any = None) -> dict[str, Any] | None:
    """Boundaries for the map: the `neighbourhoods` run option, else the first area layer a step names."""
    p = options.get("neighbourhoods")
    if p:
        return _areas(str(p))
    policy = getattr(ctx, "policy", None)
    for step in getattr(policy, "steps", []) or []:
        for name in type(step).model_fields:
            layer: Any = getattr(step, name, None)
            if layer is None or not (hasattr(layer, "layer") and hasattr(layer, "path")):
                continue
            given = options.get(layer.layer) or (ctx.resolve(layer.path) if layer.path else None)
            if given:
                return _areas(str(given))
    return None


def _versions() -> dict[str, str]:
    from release.engine import versions

    return versions()


def render_report(report: dict[str, Any], files: dict[str, bytes], ctx: Any) -> dict[str, bytes]:
    """RENDERERS hook: the public report, from report.json and the published files only."""
    from release.report.html import build_page  # matplotlib: loaded only when a page is drawn

    page = build_page(report, files, areas=_area_layer(ctx.options, ctx), approval=ctx.manifest.get("approval"),
                      versions=_versions())
    return {"report.html": page.encode("utf-8")}


def internal_report_path(bundle: Path) -> Path:
    """OUT/.internal/<dataset>/<release-id>.report.html, beside the engine's internal JSON."""
    return bundle.parent.parent / ".internal" / bundle.parent.name / f"{bundle.name}.report.html"


def write_internal_report(policy: Any, ctx: Any, bundle: Path) -> None:
    """POST_BUNDLE hook: the report plus the run's internal diagnostics, written outside the bundle."""
    report = json.loads((bundle / "report.json").read_text(encoding="utf-8"))
    target = internal_report_path(bundle)
    internal_json = target.with_name(f"{bundle.name}.json")
    internal: dict[str, Any] = {}
    if internal_json.is_file():
        internal = json.loads(internal_json.read_text(encoding="utf-8"))
    internal = {**internal, **{k: v for k, v in ctx.internal.items() if k not in internal}}
    files = {}
    for o in report.get("outputs") or []:
        for p in o.get("files") or []:
            if (bundle / p).is_file() and not p.endswith(".parquet"):
                files[p] = (bundle / p).read_bytes()
    from release.report.html import build_page  # matplotlib: loaded only when a page is drawn

    page = build_page(report, files, areas=_area_layer(ctx.options, ctx), approval=ctx.manifest.get("approval"),
                      versions=_versions(), internal=internal)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(page.encode("utf-8"))


registry.add_hook(registry.RENDERERS, render_report)
registry.add_hook(registry.POST_BUNDLE, write_internal_report)
registry.add_hook(registry.BUNDLE_CHECKS, report_html_check)
