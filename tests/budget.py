"""Test deployments for DP runs: a release.toml with approval off, a ledger and the demo's registered sources."""

from __future__ import annotations

from pathlib import Path

from release.dp.sources import DEMO_BUDGET


def write_config(folder: Path, *, ledger: str = "ledger.sqlite", uof_period: float = 15.0,
                 extra: str = "", name: str = "release.toml") -> Path:
    """release.toml in `folder`: approval explicitly off, the demo's sources ([sources.use-of-force-records]
    with its epsilon_per_period set to `uof_period`) and the ledger at `ledger` (relative to the file)."""
    text = DEMO_BUDGET.replace('path = "ledger.sqlite"', f'path = "{ledger}"')
    text = text.replace("epsilon_per_period = 15.0", f"epsilon_per_period = {uof_period}")
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text("[approval]\nrequired = false\n" + text + extra, encoding="utf-8")
    return p
