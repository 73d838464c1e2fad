"""Joint k-anonymity of records outputs with their predecessors: the run's adjustment and the assessor.

The assessor runs in `release run` and in `release check` (from the published file and the verified
predecessors published before the bundle), so the series figures of report.json are recomputed by
the check. The adjustment (`series.joint: keep-earlier | refine`) runs inside the k-anonymity step,
before outputs are built, when the record link is already in its published form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from release.context import AssessContext, StepContext
from release.errors import BlockedError
from release.series.config import source_name
from release.series.discover import Discovery, Predecessor, find_predecessors
from release.series.joint import JointResult, Regions, _leaves, join_columns, joint_check

_MAX_REFINE = 8


def discovery_for_run(ctx_options: dict[str, Any]) -> Discovery | None:
    d = ctx_options.get("_series")
    return d if isinstance(d, Discovery) else None


def discovery_for_check(policy: Any, actx: AssessContext) -> Discovery | None:
    """Predecessors a check re-discovers: verified bundles of the folder published before this bundle."""
    if actx.bundle_dir is None or source_name(policy) is None or getattr(policy, "series", None) is None:
        return None
    man = actx.manifest or {}
    cache = actx.options.setdefault("_series_check", {})
    key = str(actx.bundle_dir)
    if key not in cache:
        series: dict[str, Any] = man["series"] if isinstance(man.get("series"), dict) else {}
        named = {str(p.get("release_id")) for p in series.get("predecessors") or [] if isinstance(p, dict)}
        cache[key] = find_predecessors(Path(actx.bundle_dir).parent.parent, policy, actx.options,
                                       before=(str(man.get("created_utc")), named), exclude=Path(actx.bundle_dir))
    return cache[key]


def _regions(step: Any, options: dict[str, Any], policy_path: Path | None) -> dict[str, Regions]:
    from release.anonymize.files import hierarchy_resolver

    out = {}
    for c, h in step.quasi_identifiers.items():
        try:
            tree = h.load_tree(hierarchy_resolver(options, policy_path)) if (h.tree or h.csv) else []
        except Exception:  # noqa: BLE001 - an unreadable hierarchy file: labels are then compared as they are
            tree = []
        out[c] = Regions(hierarchy=h, tree=tree, leaves=_leaves(tree))
    return out


def _identifiers(policy: Any, frame: pd.DataFrame, dataset: str) -> dict[str, str]:
    from release.governance.linkage import PublishedTable
    from release.plan import compile_plan

    roles = {c: s.role for c, s in compile_plan(policy).final_schema.items()}
    pseud = {c: getattr(st, "link_group", None) for st in policy.steps
             if getattr(st, "type", None) == "pseudonymize" and getattr(st, "method", None) == "hmac"
             for c in getattr(st, "columns", ())}
    t = PublishedTable(dataset=dataset, bundle="", file="", frame=frame, roles=roles,
                       pseudonymized={c: g for c, g in pseud.items() if c in frame.columns})
    return t.identifiers()


def _k_step(policy: Any, cols: list[str]) -> Any:
    from release.anonymize.step import KAnonymityStep

    steps = [s for s in policy.steps if isinstance(s, KAnonymityStep) and set(s.quasi_identifiers) & set(cols)]
    return steps[-1] if steps else None


def _earlier(preds: list[Predecessor], policy: Any, table: pd.DataFrame, qis: list[str],
             usable: set[str] | None = None) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """(label, earlier table, record-link columns) for every earlier file sharing a QI and a record link."""
    mine = _identifiers(policy, table.astype(object).where(table.notna(), None), policy.dataset.name)
    out = []
    for p in preds:
        for rel, frame in p.tables.items():
            if not set(qis) & set(frame.columns):
                continue
            theirs = _identifiers(p.policy, frame, p.dataset)
            links = join_columns(table, {c: v for c, v in mine.items() if usable is None or c in usable}, frame, theirs)
            if links:
                out.append((f"{p.dataset}/{p.release_id}/{rel}", frame, links))
    return out


def joint_for(policy: Any, step: Any, table: pd.DataFrame, preds: list[Predecessor], options: dict[str, Any],
              policy_path: Path | None, usable: set[str] | None = None) -> JointResult:
    qis = [q for q in step.quasi_identifiers if q in table.columns]
    earlier = _earlier(preds, policy, table, qis, usable)
    res = joint_check(table, qis, _regions(step, options, policy_path), dict(step.sensitive), step.k, earlier)
    if preds and not earlier:
        res.case = "not joinable"
    return res


# ------------------------------------------------------------------------------------ the assessor


def assess_series(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """Records outputs of a series policy: predecessors used and the joint k (figures and a finding)."""
    policy: Any = actx.policy
    if getattr(policy, "series", None) is None or source_name(policy) is None:
        return {}
    disc = discovery_for_run(actx.options) if actx.run is not None else discovery_for_check(policy, actx)
    if disc is None:
        return {}
    table = tables.get(out.name)
    file = actx.files.get(out.name)
    fig: dict[str, Any] = {"source": disc.source, "predecessors": [p.ref() for p in disc.predecessors]}
    if disc.unverified:
        actx.finding("series-predecessors", False, f"{len(disc.unverified)} bundle(s) of the publication folder that"
                     f" may be drawn from source {disc.source} do not verify ({', '.join(disc.unverified[:5])}):"
                     " the series cannot be checked against them", file=file)
    step = _k_step(policy, list(table.columns)) if table is not None else None
    if table is None or step is None:
        return {"series": fig}
    res = joint_for(policy, step, table, disc.predecessors, actx.options, actx.run.policy_path if actx.run else None)
    fig["joint"] = res.figures()
    fig["joint"]["policy"] = policy.series.joint
    if res.case != "joined":
        why = ("no earlier release of the source shares its columns" if res.case == "no predecessor" else
               "no record of it can be joined to an earlier release (no shared record-level identifier)")
        fig["joint"]["statement"] = f"No joint check needed: {why}."
        return {"series": fig}
    nbad = len(res.failing_records) if res.failing_records is not None else 0
    ls = "".join(f", l={v} on {c}" for c, v in res.l.items())
    msg = (f"{res.joined} record(s) joined to earlier releases ({', '.join(res.link[:3])}); combined classes:"
           f" k={res.k}{ls} (the step requires k={step.k})")
    fig["joint"]["statement"] = msg + ("." if not nbad else f"; {nbad} record(s) in combined classes below k or l.")
    if actx.run is not None:
        actx.run.manifest.setdefault("series", {}).setdefault("joint", {})[out.name] = {
            "case": res.case, "k": res.k, "ok": nbad == 0}
    actx.finding("series-joint-k", nbad == 0, msg if not nbad else
                 f"{msg}: {nbad} record(s) fall in combined classes below k or l; series.joint is"
                 f" {policy.series.joint}", file=file, figure=res.k, threshold=step.k)
    return {"series": fig}


# ----------------------------------------------------------------------------- the k step's hook


def keep_series(step: Any, out: pd.DataFrame, ev: dict[str, Any], ctx: StepContext) -> tuple[pd.DataFrame,
                                                                                               dict[str, Any]]:
    """After a k-anonymity step: with `series.joint: keep-earlier | refine`, publish joined records at their earlier
    values (all of them, or only those of failing combined classes) and check the file again."""
    s = getattr(getattr(ctx, "policy", None), "series", None)
    disc = discovery_for_run(getattr(ctx, "options", None) or {})
    if s is None or s.joint == "block" or disc is None or not disc.predecessors:
        return out, ev
    at = next((i for i, st in enumerate(ctx.policy.steps) if st is step), len(ctx.policy.steps))
    later: list[Any] = list(ctx.policy.steps[at + 1:])
    touched = {c for st in later for c in st.referenced_columns()}
    usable = set(out.columns) - touched  # a link column a later step rewrites is not yet in its published form
    table = out.astype(object).where(out.notna(), None)
    res = joint_for(ctx.policy, step, table, disc.predecessors, ctx.options, ctx.policy_path, usable)
    where = f"series.joint {s.joint} on {', '.join(step.quasi_identifiers)}"
    if res.case != "joined":
        ev["series_joint"] = {"policy": s.joint, "case": res.case, "records_at_earlier_values": 0}
        return out, ev
    has_earlier = np.zeros(len(out), dtype=bool)
    for q in res.quasi_identifiers:
        has_earlier |= ~pd.isna(res.earlier[q])
    reverted = np.zeros(len(out), dtype=bool)
    result = out.copy()
    for _ in range(_MAX_REFINE):
        if s.joint == "keep-earlier":
            pick = has_earlier & ~reverted
        else:
            bad = np.zeros(len(out), dtype=bool)
            if res.failing_records is not None:
                bad[res.failing_records] = True
            pick = bad & has_earlier & ~reverted
        if not pick.any():
            break
        for q in res.quasi_identifiers:
            vals = res.earlier[q]
            take = pick & ~pd.isna(vals)
            col = result[q].astype(object).to_numpy()
            col[take] = vals[take]
            result[q] = pd.array(col, dtype="string")
        reverted |= pick
        table = result.astype(object).where(result.notna(), None)
        res = joint_for(ctx.policy, step, table, disc.predecessors, ctx.options, ctx.policy_path, usable)
        if s.joint == "keep-earlier":
            break
    broken = step._violations(result)
    if broken:
        raise BlockedError(f"{where}: publishing {int(reverted.sum())} joined record(s) at their earlier values breaks"
                           f" {', '.join(broken)} in this release; nothing was published",
                           details=["use series.joint: block and generalize as the earlier release did"])
    ev["series_joint"] = {"policy": s.joint, "case": res.case, "records_at_earlier_values": int(reverted.sum())}
    return result, ev
