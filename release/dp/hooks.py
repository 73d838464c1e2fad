"""DP hooks of the pipeline: the source and ledger before any record (PRE_RUN), the budget reserved before any
noise (PRE_OUTPUT), the bundle's spend against the ledger (BUNDLE_CHECKS), the folder's spends re-counted
(FOLDER_CHECKS), and the demo's sources (DEMO_SETUP).

Manifest keys this plug-in fills (ctx.manifest):
  opendp  {version, features}
  budget  {ledger (file name only), ledger_id, source, unit (the registered privacy-unit kind),
           privacy_unit (the policy's column), dataset, release_id, period_days, caps (effective: the
           policy's under the source's ceilings), asked, spent_in_period_before, spent_in_period_after,
           left_in_period, spends (per output), entry (the ledger entry appended: seq, prev_hash,
           release_id, dataset, source, unit, epsilon, rho, delta, created_utc, detail, hash),
           chain_head_seen (the chain head before this entry)}
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from release import registry
from release.context import Finding, StepContext
from release.dp import ledger
from release.dp.config import dp_outputs
from release.dp.noise import manifest_entry
from release.dp.sources import (
    BudgetConfig,
    Source,
    check_policy_against,
    ledger_of,
    load_budget_config,
    source_of,
)
from release.errors import PolicyError, ReleaseError

if TYPE_CHECKING:
    from release.policy.models import Policy

RESET_HINT = ("the ledger never refunds a spend: wait for the rolling period to pass; the budget belongs to the"
              " source, so another policy, dataset name, ledger or folder does not reset it")


def _min(*xs: float | None) -> float | None:
    vals = [x for x in xs if x is not None]
    return min(vals) if vals else None


def caps_of(policy: Policy, src: Source | None = None) -> ledger.Caps:
    """The effective caps: the policy's and the gate's, under the source's ceilings (the tightest wins)."""
    b = policy.budget
    g = policy.gate
    assert b is not None
    rel = {"epsilon": _min(b.epsilon_per_release, g.max_epsilon_per_release), "rho": b.rho_per_release,
           "delta": None}
    per = {"epsilon": _min(b.epsilon_per_period, g.max_epsilon_per_period), "rho": b.rho_per_period,
           "delta": b.delta_per_period}
    if src is not None:
        rel = {m: _min(rel[m], src.per_release[m]) for m in ledger.MEASURES}
        per = {m: _min(per[m], src.per_period[m]) for m in ledger.MEASURES}
    days = src.period_days if src is not None else (b.period_days or 365)
    return ledger.Caps(per_release=rel, per_period=per, period_days=days)


def _policy_ledger(policy: Policy, policy_path: Path | None) -> Path | None:
    b = policy.budget
    if b is None or not b.ledger:
        return None
    p = Path(b.ledger)
    return p if p.is_absolute() or policy_path is None else policy_path.parent / p


def resolve(policy: Policy, policy_path: Path | None, options: dict[str, Any]) -> tuple[BudgetConfig, Source, Path]:
    """The registered source, the checks of the policy against it, and the deployment's ledger."""
    cfg = load_budget_config(options)
    src = source_of(policy, cfg)
    check_policy_against(policy, src)
    return cfg, src, ledger_of(cfg, options.get("ledger"), _policy_ledger(policy, policy_path))


def pre_run(policy: Policy, policy_path: Path, options: dict[str, Any]) -> None:
    """Before any record is read: an unregistered source, a raised ceiling or a foreign ledger stop the run."""
    if dp_outputs(policy):
        resolve(policy, policy_path, options)


def published_spends(folder: Path | None) -> list[dict[str, Any]]:
    """The spends recorded by every bundle under the publication folder (read from their manifests)."""
    from release.governance.gate import find_bundles

    if folder is None or not folder.is_dir():
        return []
    out = []
    for b in find_bundles(folder):
        try:
            m = json.loads((b / "manifest.json").read_bytes())
        except (OSError, ValueError):
            continue
        rec = m.get("budget") if isinstance(m, dict) else None
        if isinstance(rec, dict) and (rec.get("entry") or rec.get("release_id")):
            out.append({"bundle": str(b.relative_to(folder)), "ledger_id": rec.get("ledger_id"),
                        "entry": rec.get("entry"), "release_id": rec.get("release_id")})
    return out


def reserve_budget(policy: Policy, ctx: StepContext) -> None:
    """Reserve the sum of every DP output's spend in one ledger transaction, before any noise is drawn."""
    outs = dp_outputs(policy)
    if not outs:
        return
    assert policy.budget is not None
    column = policy.budget.privacy_unit
    if column not in ctx.schema:
        raise PolicyError(f"budget.privacy_unit {column!r} is removed by a step before the DP outputs;"
                          " contributions cannot be bounded (keep the column until the outputs)")
    _, src, path = resolve(policy, ctx.policy_path, ctx.options)
    out_dir = ctx.options.get("_out_dir")
    spends = [s for o in outs for s in o.budget()]
    ctx.manifest["opendp"] = manifest_entry()
    rec = ledger.reserve(path, source=src.name, unit=src.unit, dataset=policy.dataset.name,
                         release_id=ctx.release_id, spends=spends, caps=caps_of(policy, src), now=ctx.now,
                         published=published_spends(Path(out_dir) if out_dir else None),
                         migrate_as={policy.dataset.name: (src.name, src.unit)}, reset_hint=RESET_HINT)
    ctx.manifest["budget"] = {**rec, "privacy_unit": column}


def implied_spend(policy: Policy) -> dict[str, float]:
    """What one release of this policy spends, from the policy alone."""
    spends = [s for o in dp_outputs(policy) for s in o.budget()]
    return {m: float(sum(s.get(m) or 0.0 for s in spends)) for m in ledger.MEASURES}


def _config_source(policy: Policy, options: dict[str, Any]) -> tuple[BudgetConfig | None, Source | None]:
    try:
        cfg = load_budget_config(options)
    except ReleaseError:
        return None, None
    b = policy.budget
    return cfg, (cfg.sources.get(b.source) if b is not None and b.source else None)


def check_budget(policy: Policy, bundle: Path | None, manifest: dict[str, Any],
                 options: dict[str, Any]) -> list[Finding]:
    """`release check`: the bundle's DP spend against the policy, the source's ceilings and (when one is given or
    configured) the ledger. During the run (bundle None) only what the bundle alone shows."""
    if not dp_outputs(policy):
        return []
    out: list[Finding] = []
    od = manifest.get("opendp") or {}
    out.append(Finding("dp-opendp", bool(od.get("version")) and "features" in od,
                       f"manifest records OpenDP {od.get('version')} with features {od.get('features')}" if od
                       else "manifest.json does not record the OpenDP version and features", file="manifest.json"))
    cfg, src = _config_source(policy, options) if bundle is not None else (None, None)
    caps = caps_of(policy, src)
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
    if bundle is None:
        return out
    if cfg is not None and cfg.config is not None:
        b = policy.budget
        out.append(Finding("dp-source", src is not None, f"the policy spends the budget of source {b.source!r}"  # type: ignore[union-attr]
                           + (f", registered with unit {src.unit!r}" if src is not None else
                              f", which {cfg.where()} does not register"), file="policy.yaml"))
    out.append(_entry_finding(policy, manifest, rec, asked, src))
    out.extend(_ledger_findings(rec, options, cfg))
    return out


def _entry_finding(policy: Policy, manifest: dict[str, Any], rec: dict[str, Any], asked: dict[str, float],
                   src: Source | None) -> Finding:
    """The recorded ledger entry is this release's spend, charged to the policy's source, and hashes to itself."""
    e = rec.get("entry")
    if not isinstance(e, dict):
        return Finding("dp-ledger-entry", False, "the manifest records no ledger entry for this release's spend",
                       file="manifest.json")
    problems = []
    try:
        if ledger.entry_hash(e) != e.get("hash"):
            problems.append("the entry's hash does not match its content")
    except (TypeError, ValueError, KeyError):
        problems.append("the entry is malformed")
    b = policy.budget
    assert b is not None
    if e.get("release_id") != manifest.get("release_id"):
        problems.append("the entry is another release's")
    if e.get("source") != b.source:
        problems.append(f"the entry charges source {e.get('source')!r}, the policy names {b.source!r}")
    if src is not None and e.get("unit") != src.unit:
        problems.append(f"the entry's privacy unit {e.get('unit')!r} is not source {src.name}'s {src.unit!r}")
    if any(abs(float(e.get(m) or 0.0) - asked[m]) > 1e-9 * max(1.0, asked[m]) for m in ledger.MEASURES):
        problems.append("the entry's epsilon/rho/delta differ from what the policy's outputs spend")
    if e.get("prev_hash") != rec.get("chain_head_seen"):
        problems.append("the entry does not chain from the head the manifest says it saw")
    if problems:
        return Finding("dp-ledger-entry", False, "; ".join(problems), file="manifest.json")
    return Finding("dp-ledger-entry", True, f"ledger entry {e.get('seq')} (hash {str(e.get('hash'))[:12]}…) records"
                   f" this release's spend against source {e.get('source')} ({e.get('unit')})", file="manifest.json")


def _ledger_findings(rec: dict[str, Any], options: dict[str, Any], cfg: BudgetConfig | None) -> list[Finding]:
    """With `--ledger L` (or the configured ledger, when present): the entry is in L, same hash, chain intact."""
    path = Path(options["ledger"]) if options.get("ledger") else (cfg.ledger if cfg and cfg.ledger else None)
    if path is None or (not options.get("ledger") and isinstance(path, Path) and not path.is_file()):
        return []
    name = path.name if isinstance(path, Path) else path.display  # a PostgreSQL ledger: server and database
    try:
        lid, entries, problems = ledger.read(path)
    except ReleaseError as err:
        return [Finding("dp-ledger", False, f"{name}: {err.message}", file="manifest.json")]
    if problems:
        return [Finding("dp-ledger", False, f"the ledger {name} is not intact: {problems[0]}",
                        file="manifest.json")]
    e: dict[str, Any] = rec["entry"] if isinstance(rec.get("entry"), dict) else {}
    missing = ledger.missing_spends(entries, lid, [{"bundle": "this bundle", "ledger_id": rec.get("ledger_id"),
                                                    "entry": e or None, "release_id": rec.get("release_id")}])
    if missing:
        return [Finding("dp-ledger", False, missing[0], file="manifest.json")]
    held = next((x for x in entries if x["hash"] == e.get("hash")), None)
    if e and (held is None or held["seq"] != e.get("seq")):
        return [Finding("dp-ledger", False, f"the ledger holds this entry at another position ({held and held['seq']})",
                        file="manifest.json")]
    return [Finding("dp-ledger", True, f"the ledger {name} ({len(entries)} entries, chain intact) holds this"
                    f" bundle's spend (entry {e.get('seq', '?')}, same hash)", file="manifest.json")]


# ------------------------------------------------------------------------------------- folder recount


def _utc_us(stamp: str) -> int:
    t = datetime.fromisoformat(stamp)
    return int(t.timestamp() * 1_000_000)


def recount_spends(manifests: list[tuple[Path, dict[str, Any]]], cfg: BudgetConfig) -> list[Finding]:
    """Re-count every spend the folder's bundles record, per (source, unit) over each rolling period, against
    the deployment's ceilings: the publication folder is the ledger of last resort."""
    out: list[Finding] = []
    seen: dict[str, str] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    dp_bundles = 0
    for b, m in manifests:
        outs: list[Any] = m["outputs"] if isinstance(m.get("outputs"), list) else []
        if not any(isinstance(o, dict) and o.get("budget") for o in outs):
            continue
        dp_bundles += 1
        rec: dict[str, Any] = m["budget"] if isinstance(m.get("budget"), dict) else {}
        e = rec.get("entry")
        if not isinstance(e, dict):
            out.append(Finding("budget-recount", False, f"{b.name}: DP outputs but no ledger entry recorded: its spend"
                               " cannot be counted", file=str(b)))
            continue
        try:
            good = ledger.entry_hash(e) == e.get("hash") and _utc_us(str(e["created_utc"])) is not None
        except (TypeError, ValueError, KeyError):
            good = False
        if not good or e.get("release_id") != m.get("release_id"):
            out.append(Finding("budget-recount", False, f"{b.name}: its recorded ledger entry does not hash to itself"
                               " or is another release's", file=str(b)))
            continue
        h = str(e["hash"])
        if h in seen:
            if seen[h] != m.get("release_id"):
                out.append(Finding("budget-recount", False, f"{b.name}: records the ledger entry of release"
                                   f" {seen[h]}", file=str(b)))
            continue  # the same release published twice spends once
        seen[h] = str(m.get("release_id"))
        groups.setdefault((str(e.get("source")), str(e.get("unit"))), []).append(e)
    if not dp_bundles:
        return [Finding("budget-recount", True, "no bundle in the folder spends DP budget")]
    if cfg.config is None:
        out.append(Finding("budget-recount", False, f"{dp_bundles} bundle(s) spend DP budget but no configuration"
                           " (release.toml [sources]) gives the ceilings to re-count them against"))
        return out
    for (source, unit), entries in sorted(groups.items()):
        out.append(_recount_group(source, unit, entries, cfg))
    return out


def _recount_group(source: str, unit: str, entries: list[dict[str, Any]], cfg: BudgetConfig) -> Finding:
    src = cfg.sources.get(source)
    if src is None:
        return Finding("budget-recount", False, f"{len(entries)} release(s) spend the budget of source {source!r},"
                       f" which {cfg.where()} does not register")
    if src.unit != unit:
        return Finding("budget-recount", False, f"{len(entries)} release(s) of source {source} charge privacy unit"
                       f" {unit!r}; the source's unit is {src.unit!r}")
    entries = sorted(entries, key=lambda e: _utc_us(str(e["created_utc"])))
    t = np.array([_utc_us(str(e["created_utc"])) for e in entries], dtype=np.int64)
    period = src.period_days * 86_400 * 1_000_000
    # Spends in (t_i - period, t_i] for every entry i: the ledger's window, ending at each release.
    lo = np.searchsorted(t, t - period, side="right")
    problems, figures = [], []
    for m in ledger.MEASURES:
        v = np.array([float(e.get(m) or 0.0) for e in entries])
        cap = src.per_release[m]
        if cap is not None and (v > cap * (1 + 1e-9)).any():
            problems.append(f"{int((v > cap * (1 + 1e-9)).sum())} release(s) spend more {m} than the per-release"
                            f" ceiling {cap:g}")
        cs = np.r_[0.0, np.cumsum(v)]
        window = cs[1:] - cs[lo]
        most = float(window.max()) if len(window) else 0.0
        cap = src.per_period[m]
        if cap is not None:
            figures.append(f"most {m} in any {src.period_days}-day period {most:g} of {cap:g}")
            if most > cap * (1 + 1e-9):
                problems.append(f"{m} spent in one {src.period_days}-day period reaches {most:g}, above the ceiling"
                                f" {cap:g}")
    msg = f"{len(entries)} release(s) of source {source} ({unit}) re-counted from the folder: "
    if problems:
        return Finding("budget-recount", False, msg + "; ".join(problems), figure=len(entries))
    return Finding("budget-recount", True, msg + "; ".join(figures), figure=len(entries))


def folder_budget_check(folder: Path, bundles: list[Path], options: dict[str, Any]) -> list[Finding]:
    """FOLDER_CHECKS hook: the spends of the verified bundles of a publication folder, re-counted."""
    manifests = []
    for b in bundles:
        try:
            m = json.loads((b / "manifest.json").read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(m, dict):
            manifests.append((b, m))
    try:
        cfg = load_budget_config(options)
    except ReleaseError as e:
        return [Finding("budget-recount", False, e.message)]
    return recount_spends(manifests, cfg)


def _register() -> None:
    registry.add_hook(registry.PRE_RUN, pre_run)
    registry.add_hook(registry.PRE_OUTPUT, reserve_budget)
    registry.add_hook(registry.BUNDLE_CHECKS, check_budget)
    registry.add_hook(registry.FOLDER_CHECKS, folder_budget_check)


_register()
