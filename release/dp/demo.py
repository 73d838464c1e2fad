"""The demo deployment's budget: its ledger and registered sources, appended to the demo's release.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import demo
from release.dp.sources import DEMO_BUDGET


def demo_budget(work: Path, policies: list[Path], options: dict[str, Any]) -> None:
    """Append [ledger] and [sources] to the demo's release.toml (after the governance hook wrote it)."""
    config = Path(options.get("config") or work / "release.toml")
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    if "[ledger]" not in text:
        config.write_text(text + DEMO_BUDGET, encoding="utf-8")
    options["config"] = str(config)
    # The configuration names the ledger; the run takes it from there.
    options.pop("ledger", None)


def _register() -> None:
    from release import registry

    registry.add_hook(demo.DEMO_SETUP, demo_budget)


_register()
