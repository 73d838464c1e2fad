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


def area_layer(options: dict[str, Any], policy: Any, subjects: list[Any] | None = None) -> dict[str, Any] | None:
    """Boundaries for the map: the first area layer a step names, as the run read it.

    During a run that is the run's trusted copy; in `release check` the file the verifier supplies
    (option or release.toml), used only when its sha256 is the one the manifest records.
    """
    from release.geomask.network import file_sha256
    from release.governance.trusted import TrustedFiles

    for step in getattr(policy, "steps", []) or []:
        for name in type(step).model_fields:
            layer: Any = getattr(step, name, None)
            if hasattr(layer, "areas"):
                layer = layer.areas
            if layer is None or not (hasattr(layer, "layer") and hasattr(layer, "property")):
                continue
            trusted = options.get("_trusted")
            if isinstance(trusted, TrustedFiles) and trusted.copy_of(layer.layer) is not None:
                return _areas(str(trusted.copy_of(layer.layer)))
            given = options.get(layer.layer)
            if not given or not Path(given).is_file():
                return None
            want = next((s.get("sha256") for s in subjects or [] if isinstance(s, dict) and s.get("name") == layer.layer),
                        None)
            if subjects is not None and want != file_sha256(Path(given)):
                return None
            return _areas(str(given))
    return None


def map_layer_name(policy: Any) -> str | None:
    """The name of the layer the report's map draws (the first one a step names), if any."""
    for step in getattr(policy, "steps", []) or []:
        for name in type(step).model_fields:
            layer: Any = getattr(step, name, None)
            if hasattr(layer, "areas"):
                layer = layer.areas
            if layer is not None and hasattr(layer, "layer") and hasattr(layer, "property"):
                return str(layer.layer)
    return None


def _area_layer(options: dict[str, Any], ctx: Any = None) -> dict[str, Any] | None:
    return area_layer(options, getattr(ctx, "policy", None))


def _versions() -> dict[str, str]:
    from release.engine import versions

    return versions()


def render_report(report: dict[str, Any], files: dict[str, bytes], ctx: Any) -> dict[str, bytes]:
    """RENDERERS hook: the public report, from report.json and the published files only."""
    from release.report.html import build_page  # matplotlib: loaded only when a page is drawn

    page = build_page(report, files, areas=_area_layer(ctx.options, ctx), approval=report.get("approval"),
                      versions=_versions())
    return {"report.html": page.encode("utf-8")}


def write_internal_report(policy: Any, ctx: Any, report: dict[str, Any], files: dict[str, bytes], folder: Path,
                          internal: dict[str, Any]) -> None:
    """PRE_PUBLISH hook: the report plus the run's internal diagnostics, written outside the publication folder."""
    def keep(p: str) -> bool:
        return p.endswith((".csv", ".geojson"))

    # Streamed files (release.io.stream.PublishedFiles) are not read to be handed over.
    shown = files.sorted(keep) if hasattr(files, "sorted") else {p: b for p, b in files.items() if keep(p)}
    from release.report.html import build_page  # matplotlib: loaded only when a page is drawn

    page = build_page(report, shown, areas=_area_layer(ctx.options, ctx), approval=report.get("approval"),
                      versions=_versions(), internal=internal)
    (folder / f"{ctx.release_id}.report.html").write_bytes(page.encode("utf-8"))


registry.add_hook(registry.RENDERERS, render_report)
registry.add_hook(registry.PRE_PUBLISH, write_internal_report)
registry.add_hook(registry.BUNDLE_CHECKS, report_html_check)
