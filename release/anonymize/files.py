"""The hierarchy files a k-anonymity step reads: named for the approval, read through the run's trusted copies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from release import registry
from release.governance.trusted import trusted_path


def _resolve(csv: str, policy_path: Path | None) -> Path:
    p = Path(csv)
    return p if p.is_absolute() or policy_path is None else policy_path.parent / p


def _name(csv: str) -> str:
    return f"hierarchy:{Path(csv).name}"


def referenced_files(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """REFERENCED_FILES hook: every ARX-style hierarchy CSV a k-anonymity step names."""
    out: list[tuple[str, str, Any]] = []
    for s in policy.steps:
        for h in (getattr(s, "quasi_identifiers", None) or {}).values():
            csv = getattr(h, "csv", None)
            if csv:
                out.append((_name(csv), "hierarchy", _resolve(csv, policy_path)))
    return out


def hierarchy_resolver(options: dict[str, Any], policy_path: Path | None) -> Callable[[Path], Path]:
    def resolve(p: Path) -> Path:
        return trusted_path(options, _name(str(p)), "hierarchy", _resolve(str(p), policy_path))  # type: ignore[return-value]

    return resolve


registry.add_hook(registry.REFERENCED_FILES, referenced_files)
