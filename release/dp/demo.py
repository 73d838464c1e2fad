"""The demo deployment's budget: its ledger and registered sources, appended to the demo's release.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import demo

# The bundled DP policies name these sources; the ceilings are the deployment's (a policy may only lower them).
DEMO_BUDGET = """
# Written by `release demo` (release.dp.demo): the one budget ledger and the registered sources.
[ledger]
path = "ledger.sqlite"

[sources.crime-records]
description = "the records management system's occurrences (victims are the privacy unit)"
unit = "person"
epsilon_per_release = 2.0
epsilon_per_period = 20.0
delta_per_period = 1e-6
period_days = 365

[sources.use-of-force-records]
description = "use-of-force reports (persons subjected to force are the privacy unit)"
unit = "person"
epsilon_per_release = 1.5
epsilon_per_period = 15.0
period_days = 365
"""


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
