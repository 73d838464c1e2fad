"""Cumulative tables audited together: a `table` output declared `series: cumulative` against its earlier tables.

A running total (year to date) published in March and again in June can be differenced: every June
cell is its March cell plus a non-negative increment. The attacker therefore knows, beside each
table's additivity and published values, that x_june - x_march = d with d >= 0 on every cell both
tables hold. This module stacks the earlier published tables of the series (found by source,
release/series/discover.py), the new table and one increment per cell into one linear model
(x_i, x_new, d >= 0; A_i x_i = 0, A_new x_new = 0, x_{i+1} - x_i - d_i = 0) and runs the table
audit's own LP attacker (`release.tables.audit.attack`) on it: no suppressed cell of either release
may be narrowed below its protection interval.

Protection (run time): the earlier tables are published, so their values are fixed; the new table's
secondary suppression is extended, cell by cell, on the lines of the cells the joint attacker narrows
(or, for an earlier cell, at the new table's cell of the same key), until the joint audit holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from release.tables.audit import Audit, attack
from release.tables.model import TableModel, TableShape, build_model, global_values

_MAX_ROUNDS = 50


@dataclass
class Earlier:
    """One earlier published table of the series, as a model with its published values (NaN: suppressed)."""

    label: str
    model: TableModel
    published: np.ndarray
    required: float


@dataclass
class Joint:
    """The stacked model and where each part sits in it."""

    model: TableModel
    offsets: list[int]
    "start of each table's cells (earlier tables, then the new one); increments follow"
    sizes: list[int]
    n_cells: int
    "cells of all tables (the increments are the columns after them)"


@dataclass
class CumulativeResult:
    earlier: list[str]
    audit: Audit
    joint: Joint
    required: np.ndarray
    "per table cell (stacked): the width it needs when suppressed"
    added: list[int] = field(default_factory=list)
    "cells of the new table suppressed for the series"

    def failing(self) -> np.ndarray:
        n = self.joint.n_cells
        sup = self.audit.suppressed[:n]
        w = self.audit.width[:n]
        return np.flatnonzero(sup & (w < self.required - 1e-6))

    def smallest(self) -> float | None:
        n = self.joint.n_cells
        sup = self.audit.suppressed[:n]
        return float(self.audit.width[:n][sup].min()) if sup.any() else None


def stack(models: list[TableModel]) -> Joint:
    """Tables in time order with an increment variable per cell two consecutive tables share."""
    sizes = [m.n for m in models]
    offsets = list(np.cumsum([0, *sizes[:-1]]))
    n_cells = int(sum(sizes))
    blocks = [m.A for m in models]
    A_tables = sp.block_diag(blocks, format="csr") if blocks else sp.csr_matrix((0, 0))
    rows, cols, vals = [], [], []
    n_inc = 0
    r = 0
    for i in range(len(models) - 1):
        a, b = models[i], models[i + 1]
        index_b = {k: j for j, k in enumerate(b.keys)}
        for ja, key in enumerate(a.keys):
            jb = index_b.get(key)
            if jb is None:
                continue
            # x_later - x_earlier - d = 0, d >= 0 (the running total never falls)
            rows += [r, r, r]
            cols += [offsets[i + 1] + jb, offsets[i] + ja, n_cells + n_inc]
            vals += [1.0, -1.0, -1.0]
            r += 1
            n_inc += 1
    A_diff = sp.csr_matrix((vals, (rows, cols)), shape=(r, n_cells + n_inc))
    A_tab = sp.hstack([A_tables, sp.csr_matrix((A_tables.shape[0], n_inc))]).tocsr()
    A = sp.vstack([A_tab, A_diff]).tocsr()
    keys: list[tuple[tuple[str, str], ...]] = [(("__cell", str(j)),) for j in range(n_cells + n_inc)]
    model = TableModel(tables=[], keys=keys, local=[], A=A, interior=np.ones(n_cells + n_inc, dtype=bool))
    return Joint(model=model, offsets=[int(o) for o in offsets], sizes=sizes, n_cells=n_cells)


def joint_audit(earlier: list[Earlier], new_model: TableModel, new_published: np.ndarray,
                new_required: float | np.ndarray) -> CumulativeResult:
    """The joint attack; `new_required` is one width for every cell, or per cell (run time: primaries also need
    their relative protection)."""
    joint = stack([e.model for e in earlier] + [new_model])
    n_inc = joint.model.n - joint.n_cells
    pub = np.concatenate([*(e.published for e in earlier), new_published, np.full(n_inc, np.nan)])
    req = np.concatenate([*(np.full(e.model.n, e.required) for e in earlier), np.broadcast_to(np.asarray(new_required, dtype=float), (new_model.n,))])
    audit = attack(joint.model, pub, integer=True)
    return CumulativeResult(earlier=[e.label for e in earlier], audit=audit, joint=joint, required=req)


def _lines(model: TableModel) -> sp.csc_matrix:
    return abs(model.A).tocsc()


def _candidates(model: TableModel, j: int, suppressed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Published cells of the new table sharing a line with cell j, cheapest first (interior, small)."""
    A = model.A.tocsr()
    lines = np.flatnonzero(abs(A[:, j]).toarray().ravel())
    cells = np.unique(A[lines].indices) if len(lines) else np.zeros(0, dtype=np.int64)
    cells = cells[(cells != j) & ~suppressed[cells]]
    cost = np.nan_to_num(values[cells], nan=0.0) + 1.0
    cost = np.where(model.interior[cells], cost, cost * 4.0)
    return cells[np.argsort(cost, kind="stable")]


def protect(earlier: list[Earlier], model: TableModel, values: np.ndarray, suppressed: np.ndarray,
            required: float | np.ndarray) -> tuple[np.ndarray, CumulativeResult]:
    """Extend the new table's suppression until no cell of the series is narrowed below its interval."""
    sup = suppressed.copy()
    added: list[int] = []
    off = sum(e.model.n for e in earlier)
    for _ in range(_MAX_ROUNDS):
        res = joint_audit(earlier, model, np.where(sup, np.nan, values), required)
        bad = res.failing()
        if len(bad) == 0:
            break
        picked = set()
        for g in bad.tolist():
            if g >= off:
                j = g - off
            else:
                # An earlier cell narrowed by the new table: widen at the new table's cell of the same key.
                t = max(i for i, o in enumerate(res.joint.offsets[:-1]) if o <= g)
                key = earlier[t].model.keys[g - res.joint.offsets[t]]
                j = next((i for i, k in enumerate(model.keys) if k == key), -1)
                if j >= 0 and not sup[j]:
                    picked.add(j)
                    continue
                if j < 0:
                    continue
            cand = [c for c in _candidates(model, j, sup, values).tolist() if c not in picked]
            if cand:
                picked.add(cand[0])
        if not picked:
            break
        for j in picked:
            sup[j] = True
            added.append(j)
    res = joint_audit(earlier, model, np.where(sup, np.nan, values), required)
    res.added = added
    return sup, res


# ----------------------------------------------------------------------------- earlier tables


def _parse(frame: pd.DataFrame, dims: tuple[str, ...], measure: str, total: str) -> tuple[TableModel, np.ndarray] | None:
    from release.tables.output import _parse_published

    parsed = _parse_published(frame, dims, measure, total)
    if isinstance(parsed, str):
        return None
    levels, cube, _ = parsed
    model = build_model([TableShape("t", dims, levels)])
    try:
        return model, global_values(model, [cube])
    except ValueError:
        return None


def earlier_tables(out: Any, stem: str, dims: tuple[str, ...], preds: list[Any]) -> list[Earlier]:
    """The series' earlier published tables of the same dimensions and measure (one per predecessor, oldest first)."""
    found = []
    for p in preds:
        outs = [o for o in p.policy.outputs if getattr(o, "kind", None) == "table" and getattr(o, "series", None)
                == "cumulative" and o.measure == out.measure]
        for o in outs:
            for t in o.table_defs():
                if tuple(t.dimensions) != tuple(dims):
                    continue
                frame = p.tables.get(f"{o.stem(t)}.csv")
                if frame is None:
                    continue
                got = _parse(frame, dims, o.measure, o.total_label)
                if got is None:
                    continue
                model, pub = got
                found.append(Earlier(label=f"{p.dataset}/{p.release_id}/{o.stem(t)}.csv", model=model, published=pub,
                                     required=o.required_interval(p.policy.gate.min_audit_interval)))
    return found


def _discovery(ctx_options: dict[str, Any]) -> Any:
    from release.series.records import discovery_for_run

    return discovery_for_run(ctx_options)


def protect_for_run(out: Any, model: TableModel, values: np.ndarray, prot: Any, ctx: Any) -> Any:
    """The table output's hook (run time): extend `prot` (a Protection) for the series; stash figures."""
    disc = _discovery(ctx.options)
    if disc is None or not disc.predecessors or len(model.tables) != 1:
        return prot
    shape = model.tables[0]
    earlier = earlier_tables(out, shape.name, shape.dims, disc.predecessors)
    if not earlier:
        return prot
    absolute = out.required_interval(ctx.policy.gate.min_audit_interval)
    # Primary cells keep their own protection (relative to their value) against the joint attacker too.
    required = np.where(np.isnan(prot.required), absolute, np.maximum(np.nan_to_num(prot.required, nan=0.0), absolute))
    sup, res = protect(earlier, model, values, prot.suppressed, required)
    if res.added:
        prot.suppressed = sup
        prot.audit = attack(model, np.where(sup, np.nan, np.nan_to_num(values, nan=0.0)), integer=out.integer)
    ctx.internal.setdefault("series_cumulative", {})[out.name] = {
        "cells_added": [dict(model.keys[j]) for j in res.added]}
    _ADDED[(ctx.release_id, out.name)] = len(res.added)
    return prot


_ADDED: dict[tuple[str, str], int] = {}


def assess_cumulative(out: Any, tables: dict[str, pd.DataFrame], actx: Any) -> dict[str, Any]:
    """Assessor of `table` outputs declared `series: cumulative`: the joint audit from the published files."""
    if getattr(out, "series", None) != "cumulative":
        return {}
    from release.series.records import discovery_for_check

    policy = actx.policy
    disc = _discovery(actx.options) if actx.run is not None else discovery_for_check(policy, actx)
    defs = out.table_defs()
    if disc is None:
        actx.finding("series-cumulative", False, f"{out.name} is declared series: cumulative but the policy declares"
                     " no series source, or the publication folder is not at hand: its earlier tables cannot be found")
        return {}
    if len(defs) != 1:
        actx.finding("series-cumulative", False, f"{out.name}: series: cumulative audits one table per output")
        return {}
    t = defs[0]
    stem = out.stem(t)
    frame = tables.get(stem)
    got = _parse(frame, tuple(t.dimensions), out.measure, out.total_label) if frame is not None else None
    if got is None:
        return {}
    model, pub = got
    earlier = earlier_tables(out, stem, tuple(t.dimensions), disc.predecessors)
    fig: dict[str, Any] = {"earlier": [e.label for e in earlier]}
    if not earlier:
        fig["statement"] = "No earlier table of the series: audited alone."
        return {"series": {"cumulative": fig}}
    required = out.required_interval(policy.gate.min_audit_interval)
    res = joint_audit(earlier, model, pub, required)
    bad = res.failing()
    sw = res.smallest()
    fig.update({"smallest_interval": None if sw is None or np.isinf(sw) else (int(sw) if float(sw).is_integer()
                                                                          else round(sw, 6)),
                "required_interval": required, "consistent": bool(res.audit.consistent)})
    if actx.run is not None:
        fig["cells_suppressed_for_series"] = _ADDED.pop((actx.run.release_id, out.name), 0)
    ok = len(bad) == 0 and res.audit.consistent
    msg = (f"audited with {len(earlier)} earlier table(s) of the series and the non-negativity of their differences:"
           f" smallest interval {fig['smallest_interval'] if sw is None or not np.isinf(sw) else 'unbounded'}"
           f" (required {required:g})")
    if not res.audit.consistent:
        msg = "the published tables are not cumulative (a running total falls) or break additivity"
    elif bad.size:
        msg += f"; {len(bad)} suppressed cell(s) narrowed below their interval by differencing"
    actx.finding("series-cumulative", ok, msg, file=actx.files.get(stem), figure=fig["smallest_interval"],
                 threshold=required)
    fig["statement"] = msg
    return {"series": {"cumulative": fig}}
