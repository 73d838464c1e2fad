"""Registers the series hooks: the source check before a run, predecessors, the joint checks, the report section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import registry
from release.errors import PolicyError
from release.series.config import source_name


def check_source(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> None:
    """PRE_RUN and PLAN_CHECKS: a series source must be registered by the deployment and agree with the budget's."""
    s = getattr(policy, "series", None)
    cumulative = [o.name for o in policy.outputs if getattr(o, "series", None) == "cumulative"]
    if cumulative and (s is None or source_name(policy) is None):
        raise PolicyError(f"outputs {cumulative} are declared series: cumulative: the policy must name its registered"
                          " source (series.source) so that the earlier tables of the series can be found")
    if s is None or s.source is None:
        return
    b = getattr(policy, "budget", None)
    if b is not None and b.source is not None and b.source != s.source:
        raise PolicyError(f"series.source {s.source!r} differs from budget.source {b.source!r}: a dataset is drawn"
                          " from one registered source")
    from release.dp.sources import load_budget_config

    cfg = load_budget_config(options)
    if s.source not in cfg.sources:
        known = ", ".join(sorted(cfg.sources)) or "none"
        raise PolicyError(f"series.source {s.source!r} is not a source registered by the deployment ({cfg.where()};"
                          f" registered: {known}): add [sources.{s.source}] to release.toml")


def discover(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> None:
    """PRE_RUN, before any record is read: the verified predecessors in the publication folder, by source."""
    if getattr(policy, "series", None) is None or source_name(policy) is None or not options.get("_out_dir"):
        return
    from release.series.discover import find_predecessors

    options["_series"] = find_predecessors(Path(options["_out_dir"]), policy, options)


def series_manifest(policy: Any, ctx: Any) -> None:
    """PRE_OUTPUT: the manifest (and report) name the source, the masks and the predecessors used."""
    d = ctx.options.get("_series")
    s = getattr(policy, "series", None)
    if s is None:
        return
    entry = ctx.manifest.setdefault("series", {})
    entry.update({"source": source_name(policy), "one_off": bool(s.one_off), "joint_policy": s.joint})
    if d is not None:
        entry["predecessors"] = [p.ref() for p in d.predecessors]
        if d.unverified:
            entry["unverified"] = list(d.unverified)


def _register() -> None:
    from release.series.records import assess_series

    registry.add_hook(registry.PRE_RUN, check_source)
    registry.add_hook(registry.PRE_RUN, discover)
    registry.add_hook(registry.PLAN_CHECKS, check_source)
    registry.add_hook(registry.PRE_OUTPUT, series_manifest)
    from release.series.folder import folder_series_check

    registry.add_hook(registry.FOLDER_CHECKS, folder_series_check)
    if assess_series not in registry.ASSESSORS.get("records", []):
        registry.register_assessor("records")(assess_series)
    from release.series.cumulative import assess_cumulative

    if assess_cumulative not in registry.ASSESSORS.get("table", []):
        registry.register_assessor("table")(assess_cumulative)


_register()
__all__ = ["check_source", "source_name"]
