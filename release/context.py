"""Values handed to steps, outputs and checks: the run context, builds, findings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from release.policy.base import Schema
    from release.policy.models import Policy


def test_mode() -> bool:
    """True when RELEASE_TEST_MODE=1: only then may seeds fix any randomness."""
    return os.environ.get("RELEASE_TEST_MODE") == "1"


@dataclass
class StepContext:
    """What a step or an output may use besides its own settings."""

    policy: Policy
    policy_path: Path | None
    schema: Schema
    release_id: str
    now: datetime
    seed: int | None = None
    "Only ever set in test mode (RELEASE_TEST_MODE=1); the CLI refuses it otherwise."
    options: dict[str, Any] = field(default_factory=dict)
    "Command-line options for plug-ins (e.g. 'ledger' path, 'network' override)."
    manifest: dict[str, Any] = field(default_factory=dict)
    "Entries plug-ins add to manifest.json (network sha256, OpenDP features, ledger...)."
    internal: dict[str, Any] = field(default_factory=dict)
    "Diagnostics kept out of the published files (internal report only)."
    step_evidence: list[dict[str, Any]] = field(default_factory=list)
    "Evidence of the steps already run, in order."
    original: pd.DataFrame | None = None
    "The validated input frame before any step (for displacement and similar figures)."
    run_key: bytes = b""
    """The run's secret for keyed per-row functions (release.batches.run_key): fixed in test mode,
    fresh per run otherwise; never written anywhere."""

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path written in the policy relative to the policy file's folder."""
        p = Path(path)
        if p.is_absolute() or self.policy_path is None:
            return p
        cand = self.policy_path.parent / p
        return cand if cand.exists() or not p.exists() else p


@dataclass
class OutputBuild:
    """What an output produced: published tables (file stem -> frame) and its evidence."""

    tables: dict[str, pd.DataFrame]
    evidence: dict[str, Any] = field(default_factory=dict)
    internal: dict[str, Any] = field(default_factory=dict)
    "Internal-only figures (true totals of suppressed cells, mappings); never published."
    geo: tuple[str, str] | None = None
    "(latitude column, longitude column) when the tables carry coordinates: adds GeoJSON."
    extra_files: dict[str, bytes] = field(default_factory=dict)
    "Further public files (relative path -> bytes)."


@dataclass
class Finding:
    """One verdict-relevant statement: a check that passed or failed, with where it applies."""

    check: str
    ok: bool
    message: str
    output: str | None = None
    file: str | None = None
    figure: Any = None
    threshold: Any = None
    skipped: bool = False
    "Not run because an earlier stage failed (never a pass: `ok` is False)."

    @property
    def status(self) -> str:
        return "pass" if self.ok else "skipped" if self.skipped else "fail"

    def to_json(self) -> dict[str, Any]:
        d = {"check": self.check, "ok": self.ok, "status": self.status, "message": self.message}
        for k in ("output", "file", "figure", "threshold"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


@dataclass
class AssessContext:
    """What an assessment sees: the policy and the published bundle, never the originals.

    `run` is set when assessing during a release (for figures that need the run, such
    as donut displacement); `release check` leaves it None and must not need it.
    """

    policy: Policy
    output_name: str
    files: dict[str, str]
    "table stem -> path relative to the bundle"
    bundle_dir: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    run: StepContext | None = None
    findings: list[Finding] = field(default_factory=list)

    def finding(self, check: str, ok: bool, message: str, **kw: Any) -> Finding:
        f = Finding(check=check, ok=ok, message=message, output=self.output_name, **kw)
        self.findings.append(f)
        return f
