"""DP hooks of the pipeline: reserve the budget before any noise (PRE_OUTPUT) and re-check it (BUNDLE_CHECKS)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from release import registry
from release.context import Finding, StepContext
from release.dp import ledger
from release.dp.config import dp_outputs
from release.dp.noise import manifest_entry
from release.errors import PolicyError

if TYPE_CHECKING:
    from release.policy.models import Policy

RESET_HINT = ("the ledger never refunds a spend: wait for the rolling period to pass, or (demo and tests only)"
              " start a fresh budget with a new ledger (`--ledger PATH`, or a new `release demo --work DIR`)")


def ledger_path(policy: Policy, ctx: StepContext) -> Path:
    """`--ledger` (run option) wins; otherwise the policy's path, relative to the policy file."""
    if ctx.options.get("ledger"):
        return Path(ctx.options["ledger"])
    assert policy.budget is not None
    return ctx.resolve(policy.budget.ledger)


def _min(*xs: float | None) -> float | None:
    vals = [x for x in xs if x is not None]
    return min(vals) if vals else None


def caps_of(policy: Policy) -> ledger.Caps:
    """The policy's caps, the gate's epsilon thresholds included (the tighter one wins)."""
    b = policy.budget
    g = policy.gate
    assert b is not None
    return ledger.Caps(
        per_release={"epsilon": _min(b.epsilon_per_release, g.max_epsilon_per_release), "rho": b.rho_per_release,
                     "delta": None},
        per_period={"epsilon": _min(b.epsilon_per_period, g.max_epsilon_per_period), "rho": b.rho_per_period,
                    "delta": b.delta_per_period},
        period_days=b.period_days)


def reserve_budget(policy: Policy, ctx: StepContext) -> None:
    """Reserve the sum of every DP output's spend in one ledger transaction, before any noise is drawn."""
    outs = dp_outputs(policy)
    if not outs:
        return
    assert policy.budget is not None
    unit = policy.budget.privacy_unit
    if unit not in ctx.schema:
        raise PolicyError(f"budget.privacy_unit {unit!r} is removed by a step before the DP outputs;"
                          " contributions cannot be bounded (keep the column until the outputs)")
    spends = [s for o in outs for s in o.budget()]
    ctx.manifest["opendp"] = manifest_entry()
    ctx.manifest["budget"] = ledger.reserve(ledger_path(policy, ctx), policy.dataset.name, unit, ctx.release_id,
                                            spends, caps_of(policy), ctx.now, reset_hint=RESET_HINT)


def implied_spend(policy: Policy) -> dict[str, float]:
    """What one release of this policy spends, from the policy alone."""
    spends = [s for o in dp_outputs(policy) for s in o.budget()]
    return {m: float(sum(s.get(m) or 0.0 for s in spends)) for m in ledger.MEASURES}


def check_budget(policy: Policy, bundle: Path, manifest: dict[str, Any], options: dict[str, Any]) -> list[Finding]:
    """`release check`: the bundle's DP spend against the policy's caps and the gate, from the bundle alone."""
    if not dp_outputs(policy):
        return []
    out: list[Finding] = []
    od = manifest.get("opendp") or {}
    out.append(Finding("dp-opendp", bool(od.get("version")) and "features" in od,
                       f"manifest records OpenDP {od.get('version')} with features {od.get('features')}" if od
                       else "manifest.json does not record the OpenDP version and features", file="manifest.json"))
    caps = caps_of(policy)
    asked = implied_spend(policy)
    rec = manifest.get("budget") or {}
    rec_asked = rec.get("asked") or {}
    same = all(abs(float(rec_asked.get(m, -1.0)) - asked[m]) <= 1e-9 * max(1.0, asked[m])
               for m in ledger.MEASURES)
    out.append(Finding("dp-budget-recorded", same,
                       "ledger spend in the manifest matches the policy's outputs" if same else
                       f"manifest ledger spend {rec_asked} differs from what the policy's outputs spend {asked}",
                       file="manifest.json"))
    for m in ledger.MEASURES:
        cap = caps.per_release.get(m)
        spent = max(asked[m], float(rec_asked.get(m, 0.0) or 0.0))
        if cap is not None:
            ok = spent <= cap * (1 + 1e-9)
            out.append(Finding(f"max-{m}-per-release", ok,
                               f"{m} per release {spent:g} {'within' if ok else 'passes'} the cap {cap:g}",
                               figure=spent, threshold=cap, file="policy.yaml"))
        cap = caps.per_period.get(m)
        if cap is not None:
            after = rec.get("spent_in_period_after") or {}
            got = after.get(m)
            ok = got is not None and float(got) <= cap * (1 + 1e-9)
            out.append(Finding(f"max-{m}-per-period", ok,
                               f"{m} spent in the {caps.period_days}-day period {got} "
                               f"{'within' if ok else 'passes (or is missing from the manifest for)'} the cap {cap:g}",
                               figure=got, threshold=cap, file="manifest.json"))
    return out


def _register() -> None:
    registry.add_hook(registry.PRE_OUTPUT, reserve_budget)
    registry.add_hook(registry.BUNDLE_CHECKS, check_budget)


_register()
