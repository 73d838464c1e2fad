"""Before any record is read: name, then build, every network and area layer a geomask step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import registry
from release.geomask.network import areas_for, network_for, network_paths, resolve_path
from release.geomask.projection import projector_for


def _geo_steps(policy: Any) -> list[Any]:
    return [s for s in policy.steps if s.type.startswith("geomask-")]


def _layers(step: Any) -> list[Any]:
    layers = [w.areas for w in (getattr(step, "within", None),) if w is not None and w.areas is not None]
    if step.type == "geomask-area":
        layers.append(step.areas)
    return layers


def referenced_files(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """REFERENCED_FILES hook: the network, streets, address points and area layers the steps will read."""
    out: list[tuple[str, str, Any]] = []
    for s in _geo_steps(policy):
        net = getattr(s, "network", None)
        if net is not None and (s.type == "geomask-snap" or getattr(s, "target_k", None) is not None):
            nodes, streets, addresses = network_paths(net, options, policy_path)
            if s.type == "geomask-snap":
                out += [("network", "network", nodes), ("streets", "streets", streets)]
            out.append(("addresses", "addresses", addresses))
        for layer in _layers(s):
            out.append((layer.layer, "layer", resolve_path(layer.path, layer.layer, options, policy_path)))
    return out


def preflight(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> None:
    """A bad CRS, network or layer fails here (exit 2) with no record read; loads are cached for the run."""
    steps = _geo_steps(policy)
    if not steps:
        return
    proj = projector_for(policy.jurisdiction)
    for s in steps:
        if s.type == "geomask-snap":
            net = network_for(s.network, options, policy_path, policy.jurisdiction, proj)
            if s.min_addresses is not None:
                net.eligible(s.min_addresses)  # min_addresses without address counts fails here, not mid-run
        for layer in _layers(s):
            areas_for(layer, options, policy_path, proj)


registry.add_hook(registry.PRE_RUN, preflight)
registry.add_hook(registry.PLAN_CHECKS, preflight)
registry.add_hook(registry.REFERENCED_FILES, referenced_files)
