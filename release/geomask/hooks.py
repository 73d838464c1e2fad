"""Before any record is read: build the projection and load every network and area layer a step names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import registry
from release.geomask.network import areas_for, network_for
from release.geomask.projection import projector_for


def preflight(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> None:
    """A bad CRS, network or layer fails here (exit 2) with no record read; loads are cached for the run."""
    steps: list[Any] = [s for s in policy.steps if s.type.startswith("geomask-")]
    if not steps:
        return
    proj = projector_for(policy.jurisdiction)
    for s in steps:
        if s.type == "geomask-snap":
            net = network_for(s.network, options, policy_path, policy.jurisdiction, proj)
            if s.min_addresses is not None:
                net.eligible(s.min_addresses)  # min_addresses without address counts fails here, not mid-run
        layers = [w.areas for w in (getattr(s, "within", None),) if w is not None and w.areas is not None]
        if s.type == "geomask-area":
            layers.append(s.areas)
        for layer in layers:
            areas_for(layer, options, policy_path, proj)


registry.add_hook(registry.PRE_RUN, preflight)
registry.add_hook(registry.PLAN_CHECKS, preflight)
