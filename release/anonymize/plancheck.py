"""Plan-time check of the k-anonymity step: every hierarchy file it names exists, parses and nests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import registry


def hierarchy_files(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> None:
    """Load each CSV hierarchy the way the step will (raises PolicyError), before any record is read."""
    base = policy_path.parent if policy_path is not None else None
    for step in policy.steps:
        if step.type != "k-anonymity":
            continue
        for h in step.quasi_identifiers.values():
            if h.csv is not None:
                h.load_tree(base)


registry.add_hook(registry.PLAN_CHECKS, hierarchy_files)
registry.add_hook(registry.PRE_RUN, hierarchy_files)
