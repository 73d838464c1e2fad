"""Secondary (complementary) suppression: an LP-guided method and the naive baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

from release.tables import audit as _audit
from release.tables.audit import Audit, attack, new_highs, pass_lp
from release.tables.model import TableModel
from release.tables.subtables import SubTables, cube_lines

_SUPPORT = 1e-7
_MAX_ROUNDS = 8
_SUB_STRATEGY = 1
"Dual simplex for the fresh perturbation LPs (see _sub_solve)."


@dataclass
class Protection:
    """What protection decided: suppressed cells by reason and the final audit."""

    primary: np.ndarray
    unknown: np.ndarray
    suppressed: np.ndarray
    audit: Audit
    required: np.ndarray
    "Width each suppressed cell must keep (NaN for published cells)."
    seconds: float = 0.0
    lp_solves: int = 0
    rounds: int = 0
    method: str = "lp"
    failing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    "Suppressed cells still narrower than required after protection (blocks the release)."
    hypercubes: int = 0
    "Perturbations taken from a hypercube (fast path, 3-D+) rather than an LP."

    @property
    def secondary(self) -> np.ndarray:
        return self.suppressed & ~self.primary & ~self.unknown


class _Local:
    """Perturbations searched in a small sub-table around the cell (its own level, the Total
    and the k most promising other levels on each axis). A perturbation of a sub-table with
    its margins is one of the whole table (zero elsewhere), so what it proves still holds;
    it only may cost a little more than the global optimum. Single tables only."""

    def __init__(self, model: TableModel, k: int) -> None:
        t = model.tables[0]
        self.shape = t.shape
        self.cube = model.local[0].reshape(self.shape)
        self.coords = np.empty((model.n, len(self.shape)), dtype=np.int64)
        self.coords[model.local[0]] = np.column_stack(np.unravel_index(np.arange(model.n), self.shape))
        self.k = k
        self._lines: dict[tuple[int, ...], sp.csr_matrix] = {}

    def cells(self, p: int, suppressed: np.ndarray, cost: np.ndarray, a: np.ndarray) -> np.ndarray:
        c = self.coords[p]
        picks = []
        sup_cube = suppressed[self.cube]
        for ax, size in enumerate(self.shape):
            # Levels whose slab already holds many suppressed cells are the likeliest partners.
            slab = sup_cube.sum(axis=tuple(i for i in range(len(self.shape)) if i != ax))
            others = np.array([lv for lv in range(size - 1) if lv != c[ax]], dtype=np.int64)
            idx = list(c)
            idx[ax] = others
            nb = self.cube[tuple(idx)]
            # Already suppressed neighbours first (free), then the cheapest, then the largest
            # (most room to move); a stable lexsort keeps the choice deterministic.
            order = np.lexsort((-a[nb], cost[nb], -slab[others], ~suppressed[nb]))
            chosen = set(others[order[: self.k]].tolist()) | {int(c[ax]), size - 1}
            picks.append(np.array(sorted(chosen), dtype=np.int64))
        return self.cube[np.ix_(*picks)].ravel()

    def lines(self, sub_shape: tuple[int, ...]) -> sp.csr_matrix:
        if sub_shape not in self._lines:
            self._lines[sub_shape] = cube_lines(sub_shape)
        return self._lines[sub_shape]


SUB_TABLE_CELLS = {2: 2600}
"""Largest sub-table searched per perturbation by number of dimensions (else 5,000); measured
on the benchmark tables (benchmarks/README.md): beyond these, time grew with no fewer cells."""


def auto_local(model: TableModel, budget: int | None = None) -> int:
    """Extra levels per axis so the sub-table around a cell holds at most `budget` cells.

    Tables within the budget are searched whole. Each search is a fresh small LP: on these
    models a cold dual simplex beat re-optimising one warm-started whole-table LP whose costs
    change after every suppression (about 50x on the 3-D benchmark).
    """
    if len(model.tables) != 1:
        return 0
    sizes = model.tables[0].shape
    budget = budget or SUB_TABLE_CELLS.get(len(sizes), 5000)
    k = max(sizes)
    while k > 1 and int(np.prod([min(s, k + 2) for s in sizes])) > budget:
        k -= 1
    return k


def _splits(a: float, w: float, integer: bool) -> tuple[float, float]:
    """Downward and upward protection levels summing to the required width w."""
    down = min(a, np.floor(w / 2) if integer else w / 2)
    return down, w - down


def required_widths(model: TableModel, values: np.ndarray, primary: np.ndarray, absolute: float,
                    relative: float, integer: bool) -> np.ndarray:
    """Required width per cell: every suppressed cell needs `absolute`; primaries also relative × value."""
    v = np.nan_to_num(values, nan=0.0)
    w = np.maximum(absolute, np.where(primary, relative * v, 0.0))
    return np.ceil(w - 1e-9) if integer else w


def _costs(model: TableModel, values: np.ndarray, cost: str, margin_weight: float) -> np.ndarray:
    v = np.nan_to_num(values, nan=0.0)
    base = np.ones(model.n) if cost == "cells" else v + 1.0
    return np.where(model.interior, base, base * margin_weight)


def protect_lp(model: TableModel, values: np.ndarray, primary: np.ndarray, *, absolute: float,
               relative: float = 0.0, integer: bool = True, cost: str = "cells",
               margin_weight: float = 2.0, local: int | None = None) -> Protection:
    """For each cell needing protection, solve the cheapest feasible perturbation that moves it
    by its protection levels (Fischetti–Salazar style LP, one up and one down), and suppress
    the support. The perturbation proves the attacker's interval: the table plus it is
    consistent with everything published. Re-audit; repeat for any cell still too narrow.
    """
    t0 = time.perf_counter()
    n = model.n
    unknown = np.isnan(values)
    a = np.nan_to_num(values, nan=0.0)
    suppressed = primary | unknown
    c = _costs(model, values, cost, margin_weight)
    eps = 1e-4 * float(np.min(c[c > 0])) if (c > 0).any() else 1e-4
    A = model.A
    M = sp.hstack([A, -A]).tocsc()
    m = A.shape[0]
    # y+ unbounded above; y- limited by the cell's value (the table stays non-negative);
    # unknown cells may not go down (their value is not known to us).
    up_hi = np.full(n, np.inf)
    dn_hi = np.where(unknown, 0.0, a)
    col_lo = np.zeros(2 * n)
    col_hi = np.concatenate([up_hi, dn_hi])
    cur = np.where(suppressed, eps, c)
    h = new_highs(1)
    pass_lp(h, M, np.zeros(m), np.zeros(m), col_lo, col_hi, np.concatenate([cur, cur]))
    solves = 0
    req = required_widths(model, values, primary, absolute, relative, integer)
    todo = np.flatnonzero(primary)
    # Largest requirements first: their cycles tend to cover smaller cells' needs.
    todo = todo[np.argsort(-(req[todo] - a[todo]), kind="stable")]
    if local is None:
        local = auto_local(model)
    loc = _Local(model, local) if local and len(model.tables) == 1 else None
    rounds = 0
    audit = None
    extra = np.zeros(n)
    # Movement each cell is already proven to have by a perturbation found earlier: a
    # primary covered by another's cycle needs no LP of its own.
    caps = np.zeros((2, n))
    while True:
        rounds += 1
        for p in todo.tolist():
            down, upl = _splits(a[p], req[p] + extra[p], integer)
            for direction, amount in ((0, upl), (1, down)):
                if amount <= 0 or caps[direction, p] >= amount - 1e-9:
                    continue
                if loc is not None:
                    y = _local_solve(loc, p, direction, amount, suppressed, c, a, dn_hi, eps)
                    solves += 1
                    if y is not None:
                        _absorb(h, y, suppressed, caps, dn_hi, eps)
                        continue
                col = p + direction * n
                other = p + (1 - direction) * n
                h.changeColBounds(int(col), float(amount), float(col_hi[col]))
                h.changeColBounds(int(other), 0.0, 0.0)
                h.run()
                solves += 1
                st = h.getModelStatus()
                if st == highspy.HighsModelStatus.kOptimal:
                    x = np.asarray(h.getSolution().col_value)
                    y = x[:n] - x[n:]
                    y[np.abs(y) <= _SUPPORT] = 0.0
                    _absorb(h, y, suppressed, caps, dn_hi, eps)
                h.changeColBounds(int(col), 0.0, float(col_hi[col]))
                h.changeColBounds(int(other), 0.0, float(col_hi[other]))
        pub = np.where(suppressed, np.nan, a)
        audit = attack(model, pub, integer=integer)
        solves += audit.solves
        need = np.where(suppressed & ~unknown, np.maximum(req, absolute), np.nan)
        bad = np.flatnonzero(suppressed & ~unknown & (audit.width < need - 1e-6))
        if len(bad) == 0 or rounds >= _MAX_ROUNDS:
            break
        todo = bad
        req = np.where(suppressed & ~primary, np.maximum(req, absolute), req)
        # Rounding (integer attacker) or degenerate vertices can leave a cell one unit short.
        extra[bad] += 1.0
    need = np.where(suppressed & ~unknown, np.maximum(req, absolute), np.nan)
    failing = np.flatnonzero(suppressed & ~unknown & (audit.width < need - 1e-6))
    return Protection(primary=primary, unknown=unknown, suppressed=suppressed, audit=audit, required=need,
                      seconds=time.perf_counter() - t0, lp_solves=solves, rounds=rounds, method="lp",
                      failing=failing)


def _local_solve(loc: _Local, p: int, direction: int, amount: float, suppressed: np.ndarray, c: np.ndarray,
                 a: np.ndarray, dn_hi: np.ndarray, eps: float) -> np.ndarray | None:
    """The cheapest perturbation of the sub-table around p moving it by amount; None if none."""
    cells = loc.cells(p, suppressed, c, a)
    k = len(cells)
    sub_shape = tuple(len(x) for x in _sub_levels(loc, cells))
    L = loc.lines(sub_shape)
    M = sp.hstack([L, -L])
    cur = np.where(suppressed[cells], eps, c[cells])
    lo = np.zeros(2 * k)
    hi = np.concatenate([np.full(k, np.inf), dn_hi[cells]])
    at = int(np.flatnonzero(cells == p)[0])
    col, other = at + direction * k, at + (1 - direction) * k
    if amount > hi[col]:
        return None
    lo[col] = amount
    hi[other] = 0.0
    h = new_highs(1)
    pass_lp(h, M, np.zeros(L.shape[0]), np.zeros(L.shape[0]), lo, hi, np.concatenate([cur, cur]))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    x = np.asarray(h.getSolution().col_value)
    y = np.zeros(len(a))
    ys = x[:k] - x[k:]
    ys[np.abs(ys) <= _SUPPORT] = 0.0
    y[cells] = ys
    return y


def _sub_levels(loc: _Local, cells: np.ndarray) -> list[np.ndarray]:
    co = loc.coords[cells]
    return [np.unique(co[:, ax]) for ax in range(co.shape[1])]


def _absorb(h: highspy.Highs, y: np.ndarray, suppressed: np.ndarray, caps: np.ndarray, dn_hi: np.ndarray, eps: float) -> None:
    """Take a perturbation's cells into the suppression: suppress them and make them cheap to reuse."""
    _update_caps(caps, y, dn_hi)
    new = (y != 0) & ~suppressed
    if new.any():
        suppressed |= new
        n = len(suppressed)
        idx = np.flatnonzero(new)
        h.changeColsCost(len(idx), idx.astype(np.int32), np.full(len(idx), eps))
        h.changeColsCost(len(idx), (idx + n).astype(np.int32), np.full(len(idx), eps))


def _update_caps(caps: np.ndarray, y: np.ndarray, dn_hi: np.ndarray) -> None:
    """Scale y (and -y) as far as non-negativity allows; record how far each cell moves."""
    neg, pos = y < 0, y > 0
    with np.errstate(divide="ignore"):
        t_plus = float(np.min(dn_hi[neg] / -y[neg])) if neg.any() else np.inf
        t_minus = float(np.min(dn_hi[pos] / y[pos])) if pos.any() else np.inf
    if np.isinf(t_plus) or np.isinf(t_minus):
        return  # a free direction means unbounded cells; the audit will say so
    up = np.maximum(t_plus * np.maximum(y, 0), t_minus * np.maximum(-y, 0))
    dn = np.maximum(t_plus * np.maximum(-y, 0), t_minus * np.maximum(y, 0))
    np.maximum(caps[0], up, out=caps[0])
    np.maximum(caps[1], dn, out=caps[1])


def protect_naive(model: TableModel, values: np.ndarray, primary: np.ndarray, *, absolute: float,
                  relative: float = 0.0, integer: bool = True, max_rounds: int = 50) -> Protection:
    """Baseline: for every cell still too narrow, suppress the smallest other published
    non-zero cell on each line through it; audit; repeat until the audit passes."""
    t0 = time.perf_counter()
    unknown = np.isnan(values)
    a = np.nan_to_num(values, nan=0.0)
    suppressed = primary | unknown
    req = required_widths(model, values, primary, absolute, relative, integer)
    A = model.A.tocsr()
    At = model.A.tocsc()
    solves = 0
    rounds = 0
    while True:
        rounds += 1
        audit = attack(model, np.where(suppressed, np.nan, a), integer=integer)
        solves += audit.solves
        need = np.where(suppressed & ~unknown, np.maximum(req, absolute), np.nan)
        bad = np.flatnonzero(suppressed & ~unknown & (audit.width < need - 1e-6))
        if len(bad) == 0 or rounds >= max_rounds:
            break
        added = False
        for f in bad:
            for r in At.indices[At.indptr[f]:At.indptr[f + 1]]:
                cells = A.indices[A.indptr[r]:A.indptr[r + 1]]
                cand = cells[~suppressed[cells] & (cells != f)]
                if len(cand) == 0:
                    continue
                pos = cand[a[cand] > 0]
                pick = pos if len(pos) else cand
                j = pick[np.argmin(a[pick])]
                suppressed[j] = True
                added = True
        if not added:
            break
    return Protection(primary=primary, unknown=unknown, suppressed=suppressed, audit=audit, required=need,
                      seconds=time.perf_counter() - t0, lp_solves=solves, rounds=rounds, method="naive",
                      failing=bad)


# ---------------------------------------------------------------------- the fast path

def protect_fast(model: TableModel, values: np.ndarray, primary: np.ndarray, *, absolute: float,
                 relative: float = 0.0, integer: bool = True, cost: str = "cells", margin_weight: float = 2.0,
                 local: int | None = None, workers: int | None = None, max_rounds: int = _MAX_ROUNDS,
                 exact: bool = False, proof_from: int | None = None) -> Protection:
    """Audit first, perturb only where an interval is short, in sub-tables of linked tables.

    1. The (decomposed, batched) LP audit of the current pattern shows which cells are wide
       enough: they need nothing (most primaries of a 2-D table protect one another), and the
       room it finds in each direction counts as proved. This first pass proves widths only
       (two feasible tables far enough apart); a cell it cannot prove gets its exact interval.
    2. In tables of HYPERCUBE_DIMS or more dimensions, each short cell first takes the
       cheapest hypercube through it that fits (SubTables.hypercube: a perturbation, so a
       proof of the movement it gives); only cells still short go on to the LP below.
       Each short cell gets the cheapest perturbation moving it by its missing protection
       level, searched in the sub-tables around it: its own table first with cells shared
       with other tables held fixed, then all linked tables jointly, then the whole model.
       Its support is suppressed; a perturbation found for one cell proves others on it.
    3. Re-audit; repeat for cells still short (at most `max_rounds` passes). The re-audits are
       the audit proper: exact intervals on components below `proof_from` cells, a proof of
       width above (`attack`); `exact=True` makes every interval of the last audit exact.
    """
    t0 = time.perf_counter()
    n = model.n
    unknown = np.isnan(values)
    a = np.nan_to_num(values, nan=0.0)
    suppressed = primary | unknown
    c = _costs(model, values, cost, margin_weight)
    eps = 1e-4 * float(np.min(c[c > 0])) if (c > 0).any() else 1e-4
    dn_hi = np.where(unknown, 0.0, a)
    req = required_widths(model, values, primary, absolute, relative, integer)
    k = local if local is not None else _auto_k(model)
    sub = SubTables(model, k)
    cube_first = max(len(t.dims) for t in model.tables) >= HYPERCUBE_DIMS
    proof_from = _audit.WIDTH_PROOF_CELLS if proof_from is None else proof_from
    cubes = 0
    whole: list[highspy.Highs] = []
    solves = rounds = 0
    caps = np.zeros((2, n))
    extra = np.zeros(n)
    prev_bad = np.zeros(n, dtype=bool)
    while True:
        rounds += 1
        need = np.where(suppressed & ~unknown, np.maximum(req, absolute), np.nan)
        # The first pass only screens: every component proves widths (a cell shown wide enough
        # by two feasible tables is not solved further). Later passes are the audit itself
        # (exact intervals, or a proof of width on large components), and the last one is the
        # proof reported.
        screen = rounds == 1
        # Cells suppressed at source keep the absolute width too (as `release check` asks of every
        # suppressed cell), so the last audit is the one the check recomputes from the files.
        audit = attack(model, np.where(suppressed, np.nan, a), integer=integer, workers=workers,
                       need=np.where(unknown, absolute, need), exact=exact and not screen,
                       proof_from=0 if screen else proof_from)
        solves += audit.solves
        bad_mask = suppressed & ~unknown & (audit.width < need - 1e-6)
        bad = np.flatnonzero(bad_mask)
        if len(bad) == 0 and screen:
            # The screen passed. It is the audit proper when it asked that audit's question (every
            # component at least `proof_from` cells) or already holds every answer it would give
            # (every interval exact, as the audit proper gives on smaller components or with
            # `exact`); running that audit would only repeat the work. Otherwise it follows.
            comp = audit.component if audit.component is not None else np.zeros(n, dtype=np.int64)
            sizes = comp[audit.suppressed & (comp > 0)]
            all_large = not exact and not (sizes < proof_from).any()
            if not (all_large or (audit.exact and (exact or not (sizes >= proof_from).any()))):
                continue
            audit.proof_from = proof_from
        if len(bad) == 0 or rounds > max_rounds:
            break
        # Cells short again after a perturbation was found for them: rounding (integer
        # attacker) or degenerate vertices; ask for one more unit.
        extra[bad_mask & prev_bad] += 1.0
        prev_bad = bad_mask
        s_idx = np.flatnonzero(suppressed)
        caps[0, s_idx] = np.maximum(caps[0, s_idx], np.nan_to_num(audit.upper[s_idx] - a[s_idx], posinf=np.inf))
        caps[1, s_idx] = np.maximum(caps[1, s_idx], a[s_idx] - audit.lower[s_idx])
        sub.start(suppressed)
        bad = bad[np.argsort(-(need[bad] - a[bad]), kind="stable")]
        pending = bad_mask.astype(float)
        for p in bad.tolist():
            down, upl = _splits(a[p], need[p] + extra[p], integer)
            if cube_first:
                # Hypercube first: one cheap vectorised choice covers both directions.
                want_up = upl if caps[0, p] < upl - 1e-9 else 0.0
                want_dn = down if caps[1, p] < down - 1e-9 else 0.0
                hc = (sub.hypercube(p, want_up, want_dn, suppressed, c, dn_hi, pending)
                      if want_up + want_dn > 0 else None)
                pending[p] = 0.0
                if hc is not None:
                    cells, ys = hc
                    cubes += 1
                    _update_caps_sparse(caps, cells, ys, dn_hi)
                    new = cells[~suppressed[cells]]
                    if len(new):
                        suppressed[new] = True
                        sub.suppress(new)
            for direction, amount in ((0, upl), (1, down)):
                if amount <= 0 or caps[direction, p] >= amount - 1e-9:
                    continue
                y = None
                for joint in ((False, True) if len(model.tables) > 1 else (False,)):
                    y = _sub_solve(sub, p, direction, amount, suppressed, c, a, dn_hi, eps, joint)
                    solves += 1
                    if y is not None:
                        break
                if y is None:
                    y = _whole_solve(model, whole, p, direction, amount, suppressed, c, dn_hi, eps)
                    solves += 1
                if y is not None:
                    cells, ys = y
                    _update_caps_sparse(caps, cells, ys, dn_hi)
                    new = cells[(ys != 0) & ~suppressed[cells]]
                    if len(new):
                        suppressed[new] = True
                        sub.suppress(new)
    need = np.where(suppressed & ~unknown, np.maximum(req, absolute), np.nan)
    failing = np.flatnonzero(suppressed & ~unknown & (audit.width < need - 1e-6))
    return Protection(primary=primary, unknown=unknown, suppressed=suppressed, audit=audit, required=need,
                      seconds=time.perf_counter() - t0, lp_solves=solves, rounds=rounds, method="fast",
                      failing=failing, hypercubes=cubes)


HYPERCUBE_DIMS = 3
"Tables with at least this many dimensions try a hypercube before the perturbation LP."
LARGE_TABLE_CELLS = 25_000
"A 3-D or larger table with more cells than this searches smaller sub-tables (LARGE_SUB_TABLE_CELLS)."
LARGE_SUB_TABLE_CELLS = 1000
"""Sub-table size for large 3-D+ tables: each perturbation LP costs ~10x less than at 5,000
cells; on 20 x 20 x 10 (where the full size fits) this size used 16% more cells."""


def _auto_k(model: TableModel) -> int:
    """Extra levels per axis so one table's sub-table holds at most SUB_TABLE_CELLS cells."""
    sizes = max((t.shape for t in model.tables), key=lambda s: int(np.prod(s)))
    budget = SUB_TABLE_CELLS.get(len(sizes), 5000)
    if len(sizes) >= 3 and int(np.prod(sizes)) > LARGE_TABLE_CELLS:
        budget = LARGE_SUB_TABLE_CELLS
    k = max(max(t.shape) for t in model.tables)
    while k > 1 and int(np.prod([min(s, k + 2) for s in sizes])) > budget:
        k -= 1
    return k


def _sub_solve(sub: SubTables, p: int, direction: int, amount: float, suppressed: np.ndarray, c: np.ndarray,
               a: np.ndarray, dn_hi: np.ndarray, eps: float, joint: bool, k: int | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The cheapest perturbation of the sub-tables around p moving it by amount; None if none."""
    cells, L, _ = sub.build(p, suppressed, c, a, joint, k)
    k = len(cells)
    up_hi = np.full(k, np.inf)
    dn = dn_hi[cells].copy()
    if not joint:
        # Cells of other tables' lines are outside this sub-problem: they must not move.
        fixed = sub.shared[cells]
        up_hi[fixed] = 0.0
        dn[fixed] = 0.0
    at = int(np.flatnonzero(cells == p)[0])
    lo = np.zeros(2 * k)
    hi = np.concatenate([up_hi, dn])
    col, other = at + direction * k, at + (1 - direction) * k
    if amount > hi[col]:
        return None
    lo[col] = amount
    hi[other] = 0.0
    cur = np.where(suppressed[cells], eps, c[cells])
    costs = np.concatenate([cur, cur])
    m = L.shape[0]
    # A fresh LP each time: warm-starting one LP per sub-table shape with new costs and bounds
    # was measured ~50x slower (the old basis is far from feasible for the new cell).
    h = new_highs(_SUB_STRATEGY)
    pass_lp(h, sp.hstack([L, -L]).tocsc(), np.zeros(m), np.zeros(m), lo, hi, costs)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    x = np.asarray(h.getSolution().col_value)
    ys = x[:k] - x[k:]
    ys[np.abs(ys) <= _SUPPORT] = 0.0
    nz = ys != 0
    return cells[nz], ys[nz]


def _whole_solve(model: TableModel, holder: list, p: int, direction: int, amount: float, suppressed: np.ndarray,
                 c: np.ndarray, dn_hi: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Last resort: the cheapest perturbation over the whole model (one warm-started LP)."""
    n = model.n
    if not holder:
        A = model.A
        h = new_highs(1)
        pass_lp(h, sp.hstack([A, -A]).tocsc(), np.zeros(A.shape[0]), np.zeros(A.shape[0]), np.zeros(2 * n),
                np.concatenate([np.full(n, np.inf), dn_hi]), np.zeros(2 * n))
        holder.append(h)
    h = holder[0]
    cur = np.where(suppressed, eps, c)
    h.changeColsCost(2 * n, np.arange(2 * n, dtype=np.int32), np.concatenate([cur, cur]))
    col, other = p + direction * n, p + (1 - direction) * n
    hi_col = np.inf if direction == 0 else dn_hi[p]
    if amount > hi_col:
        return None
    h.changeColBounds(int(col), float(amount), float(hi_col))
    h.changeColBounds(int(other), 0.0, 0.0)
    h.run()
    ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.asarray(h.getSolution().col_value) if ok else None
    h.changeColBounds(int(col), 0.0, float(hi_col))
    h.changeColBounds(int(other), 0.0, float(np.inf if direction == 1 else dn_hi[p]))
    if x is None:
        return None
    y = x[:n] - x[n:]
    y[np.abs(y) <= _SUPPORT] = 0.0
    nz = np.flatnonzero(y)
    return nz, y[nz]


def _update_caps_sparse(caps: np.ndarray, cells: np.ndarray, ys: np.ndarray, dn_hi: np.ndarray) -> None:
    """As _update_caps, on a perturbation's support only."""
    neg, pos = ys < 0, ys > 0
    d = dn_hi[cells]
    with np.errstate(divide="ignore"):
        t_plus = float(np.min(d[neg] / -ys[neg])) if neg.any() else np.inf
        t_minus = float(np.min(d[pos] / ys[pos])) if pos.any() else np.inf
    if np.isinf(t_plus) or np.isinf(t_minus):
        return
    up = np.maximum(t_plus * np.maximum(ys, 0), t_minus * np.maximum(-ys, 0))
    dn = np.maximum(t_plus * np.maximum(-ys, 0), t_minus * np.maximum(ys, 0))
    caps[0, cells] = np.maximum(caps[0, cells], up)
    caps[1, cells] = np.maximum(caps[1, cells], dn)
