"""The policy's `series` section: the registered source a dataset is drawn from and what re-releases must keep."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from release.errors import PolicyError, UsageError
from release.policy.base import StrictModel

if TYPE_CHECKING:
    from release.policy.models import Policy

_MIN_SECRET_BYTES = 16


class SeriesPolicy(StrictModel):
    """How this dataset's releases relate to every earlier release drawn from the same source."""

    source: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    "The registered internal source (release.toml [sources.NAME]): masks are keyed by it, predecessors found by it."
    secret_env: str | None = None
    "Environment variable holding the deployment secret per-record masks are derived from. Never written anywhere."
    secret_file: str | None = None
    "File holding the deployment secret (instead of secret_env)."
    one_off: bool = False
    "A declared one-off release: masks drawn afresh (averaging re-releases would undo them); shown in the report."
    joint: Literal["block", "keep-earlier", "refine"] = "block"
    """When records joined across versions fall into combined classes below k or l: block the release, keep the
    earlier release's generalization for the records it published (full-domain), or refine only where safe (local)."""

    @model_validator(mode="after")
    def _secret(self) -> SeriesPolicy:
        if self.secret_env and self.secret_file:
            raise ValueError("give secret_env or secret_file, not both")
        if not self.one_off and (self.secret_env or self.secret_file) and self.source is None:
            raise ValueError("keyed masks need the registered source (series.source)")
        return self


def source_name(policy: Policy) -> str | None:
    """The registered source a policy draws from: series.source, else its DP budget's source."""
    s = getattr(policy, "series", None)
    if s is not None and s.source is not None:
        return str(s.source)
    b = getattr(policy, "budget", None)
    return getattr(b, "source", None) if b is not None else None


def one_off(policy: Policy) -> bool:
    s = getattr(policy, "series", None)
    return bool(s is not None and s.one_off)


def secret_of(policy: Policy, policy_path: Path | None, where: str) -> bytes:
    """The deployment secret the series section names (never written to the bundle)."""
    s = getattr(policy, "series", None)
    if s is None or not (s.secret_env or s.secret_file) or source_name(policy) is None:
        raise PolicyError(f"{where}: per-record masks are keyed by the record's registered source so that a record"
                          " keeps its mask in every release; declare series.source (a source registered in"
                          " release.toml) and series.secret_env or series.secret_file, or series.one_off: true"
                          " for a release that will never be repeated")
    if s.secret_env:
        val = os.environ.get(s.secret_env)
        if not val:
            raise UsageError(f"{where}: environment variable {s.secret_env} is not set (series.secret_env: the"
                             " deployment secret masks are keyed with)")
        key = val.encode()
    else:
        p = Path(s.secret_file)
        if not p.is_absolute() and policy_path is not None and (policy_path.parent / p).exists():
            p = policy_path.parent / p
        try:
            key = p.read_bytes().strip()
        except OSError as e:
            raise UsageError(f"{where}: cannot read series.secret_file {p}: {e.strerror}") from None
    if len(key) < _MIN_SECRET_BYTES:
        raise UsageError(f"{where}: the deployment secret must be at least {_MIN_SECRET_BYTES} bytes")
    return key
