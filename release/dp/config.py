"""The policy's `budget:` section: source, privacy unit, per-release spend, contribution bounds, caps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from release.policy.base import StrictModel

if TYPE_CHECKING:
    from release.policy.models import Policy


class BudgetPolicy(StrictModel):
    """Caps on privacy loss across releases, enforced by the ledger before noise is drawn."""

    source: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    "Internal source registered in release.toml [sources.NAME]: spends are charged to (source, privacy-unit kind)."
    privacy_unit: str
    "Column identifying the person (or incident) whose contribution is bounded and protected."
    ledger: str | None = None
    "Only for old policies: must name the deployment's ledger (release.toml [ledger] path), which is the one used."
    epsilon: float | None = Field(default=None, gt=0)
    "Epsilon one release spends (pure DP, discrete Laplace), split across DP outputs by their weights."
    rho: float | None = Field(default=None, gt=0)
    "Rho one release spends (zCDP, discrete Gaussian), split across DP outputs by their weights."
    delta: float | None = Field(default=None, gt=0, lt=1e-3)
    "Delta one release spends on DP key discovery (thresholding); required only when keys are discovered."
    max_records_per_unit: int = Field(default=1, ge=1)
    "Most records one privacy unit may contribute to a table; more are truncated (a repeat victim cannot dominate)."
    max_groups_per_unit: int | None = Field(default=None, ge=1)
    "Most distinct cells one privacy unit may contribute to (bounds key discovery's L0 sensitivity)."
    epsilon_per_release: float | None = Field(default=None, gt=0)
    "Cap on epsilon spent by one release (pure DP)."
    epsilon_per_period: float | None = Field(default=None, gt=0)
    "Cap on epsilon spent within any rolling `period_days`."
    rho_per_release: float | None = Field(default=None, gt=0)
    "Cap on rho (zCDP) spent by one release."
    rho_per_period: float | None = Field(default=None, gt=0)
    "Cap on rho spent within any rolling `period_days`."
    delta_per_period: float | None = Field(default=None, gt=0, lt=1)
    "Cap on delta spent within any rolling `period_days` (key discovery)."
    period_days: int | None = Field(default=None, ge=1)
    "Rolling period of the per-period caps: the source's (release.toml); if given it must equal it."

    @model_validator(mode="after")
    def _one_measure(self) -> BudgetPolicy:
        from release.dp.sources import normal_positive

        if self.epsilon is not None and self.rho is not None:
            raise ValueError("give epsilon (pure DP) or rho (zCDP), not both")
        for k in ("epsilon", "rho", "delta", "epsilon_per_release", "epsilon_per_period", "rho_per_release",
                  "rho_per_period", "delta_per_period"):
            v = getattr(self, k)
            if v is not None and not normal_positive(v):
                # Denormals (1e-320) and infinities pass `gt=0` but make noise or caps meaningless.
                raise ValueError(f"{k} must be a finite, normal positive number")
        if self.max_groups_per_unit is not None and self.max_groups_per_unit > self.max_records_per_unit:
            raise ValueError("max_groups_per_unit cannot exceed max_records_per_unit")
        return self

    @property
    def measure(self) -> str:
        return "rho" if self.rho is not None else "epsilon"


def dp_outputs(policy: Policy) -> list[Any]:
    """The policy's outputs that spend DP budget (they carry a `weight`)."""
    return [o for o in policy.outputs if getattr(o, "spends_budget", False)]


def assign_shares(policy: Policy) -> None:
    """Split the release's budget across DP outputs by weight (called when the policy validates).

    Each DP output keeps its share privately so that `budget()` and `plan_info()`, which
    see only the output, can report the exact epsilon/rho it will be charged.
    """
    outs = dp_outputs(policy)
    if not outs:
        return
    b = policy.budget
    if b is None:
        raise ValueError("DP outputs need a `budget:` section (privacy unit, epsilon or rho, caps)")
    if b.epsilon is None and b.rho is None:
        raise ValueError("budget: give the epsilon (or rho) one release spends")
    if b.privacy_unit not in policy.input.columns:
        raise ValueError(f"budget.privacy_unit {b.privacy_unit!r} is not a declared input column")
    if getattr(b, f"{b.measure}_per_period") is None:
        raise ValueError(f"budget.{b.measure}_per_period: a DP policy needs a period cap (a budget that never runs"
                         " out protects no one)")
    if b.delta is not None and b.delta_per_period is None:
        raise ValueError("budget.delta_per_period: a policy spending delta needs a period cap on it")
    discovering = [o for o in outs if o.discovers_keys()]
    if discovering and b.delta is None:
        raise ValueError(f"output {discovering[0].name!r} discovers keys from the data: set budget.delta")
    if discovering and b.rho is not None:
        raise ValueError(f"output {discovering[0].name!r} discovers keys: use epsilon (pure DP + delta), not rho")
    total_w = sum(o.weight for o in outs)
    # A record as the privacy unit contributes one row: the bound (and the sensitivity) is 1.
    per_record = b.privacy_unit == policy.input.record_id
    for o in outs:
        share: dict[str, Any] = {"mechanism": "gaussian" if b.rho is not None else "laplace",
                                 "max_records": 1 if per_record else b.max_records_per_unit,
                                 "max_groups": 1 if per_record else b.max_groups_per_unit}
        if b.rho is not None:
            share["rho"] = b.rho * o.weight / total_w
        else:
            share["epsilon"] = b.epsilon * o.weight / total_w  # type: ignore[operator]
        if o.discovers_keys():
            share["delta"] = b.delta * o.weight / sum(x.weight for x in discovering)  # type: ignore[operator]
        o._share = share
