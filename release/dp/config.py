"""The policy's `budget:` section: privacy unit, caps per release and per period, ledger."""

from __future__ import annotations

from pydantic import Field

from release.policy.base import StrictModel


class BudgetPolicy(StrictModel):
    """Caps on privacy loss across releases, enforced by the ledger before noise is drawn."""

    privacy_unit: str
    "Column identifying the person (or incident) whose contribution is bounded and protected."
    ledger: str = "ledger.sqlite"
    "SQLite ledger path (relative to the policy file); `--ledger` on the command line overrides it."
    epsilon_per_release: float | None = Field(default=None, gt=0)
    "Cap on epsilon spent by one release (pure DP)."
    epsilon_per_period: float | None = Field(default=None, gt=0)
    "Cap on epsilon spent within any rolling `period_days`."
    rho_per_release: float | None = Field(default=None, gt=0)
    "Cap on rho (zCDP) spent by one release."
    rho_per_period: float | None = Field(default=None, gt=0)
    "Cap on rho spent within any rolling `period_days`."
    period_days: int = Field(default=365, ge=1)
    "Length of the rolling period the per-period caps apply to."
