"""The linear-programming attacker: the interval each suppressed cell can be recomputed to."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from release.tables.model import TableModel

_TOL = 1e-7
_CERT = 1e-6
"Slack within which a feasible point attaining a row bound proves that bound (then rounded)."
BATCH_CELLS = 4000
"Small components are solved together in one block-diagonal LP of at most this many cells."
PARALLEL_TASKS = 3000
"Below this many min/max problems the audit stays in one process (a worker costs ~0.5 s to start)."
_PROPAGATE_SWEEPS = 100
"Cap on bound-propagation sweeps (each is vectorised; tables with margins settle in a few)."
WIDTH_PROOF_CELLS = 3000
"""From this many cells a component's audit proves each cell's required width (two feasible
tables that far apart) instead of its exact interval, when widths are given (`attack(need=)`).
Below it the exact intervals are affordable (the 158 x 9 x 12 benchmark's 2,968-cell component:
3.4 s CPU); above it they may not be (a 30 x 30 x 20 pattern's 3,010 cells: 38 s; the
50 x 50 x 20 benchmark's 7,512: ~320 s, against ~9 s for the proof of width)."""
_SPREAD_ROUNDS = 16
"Cap on the spreading rounds of a width proof (each pushes every unproved cell to a bound)."


@dataclass
class Audit:
    """Attacker bounds per cell (published cells: their value); widths of suppressed cells."""

    lower: np.ndarray
    upper: np.ndarray
    suppressed: np.ndarray
    consistent: bool
    "False when the published values break additivity (tampering or a bug)."
    solves: int = 0
    components: int = 0
    "Independent blocks of suppressed cells (sharing no equation) the attack was split into."
    largest_component: int = 0
    certified: int = 0
    "Bounds proved by a feasible point meeting a propagated bound (no LP of their own)."
    component: np.ndarray | None = None
    "Per cell, the number of cells in its component (0: published or determined by elimination)."
    inexact: np.ndarray | None = None
    """Suppressed cells whose interval is proved, not exact: the span of two feasible tables,
    inside the attacker's exact interval and at least the width required (None: all exact)."""
    asked: np.ndarray | None = None
    """Per cell, the width the audit was asked to prove on components of `proof_from` cells or
    more (NaN: an exact interval was asked); the same question gives the same answer."""
    proof_from: int = 0
    "Components of this many cells or more were asked for a proof of width (`attack`)."

    @property
    def exact(self) -> bool:
        """Every interval is the attacker's exact one."""
        return self.inexact is None or not bool(self.inexact.any())

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def smallest_width(self) -> float | None:
        if not self.suppressed.any():
            return None
        return float(np.min(self.width[self.suppressed]))


def new_highs(strategy: int = 4) -> highspy.Highs:
    """A silent HiGHS instance; strategy 4 (primal simplex) suits repeated cost changes,
    1 (dual) repeated bound changes, both warm-started from the previous basis."""
    # highspy.Highs() prints its banner from the constructor (enableCallbacks runs before any
    # option can be set), which would corrupt `--json` on stdout: build the core object, set
    # the output options first; callbacks are not used here.
    core = getattr(getattr(highspy, "_core", None), "_Highs", None)
    h = core() if core is not None else highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("simplex_strategy", strategy)
    # Many solves on one model differing in a cost or a bound: presolve would discard the
    # warm-start basis each time; hot-started dual/primal simplex is far faster here.
    h.setOptionValue("presolve", "off")
    return h


def pass_lp(h: highspy.Highs, A: sp.spmatrix, row_lo: np.ndarray, row_hi: np.ndarray, col_lo: np.ndarray,
            col_hi: np.ndarray, cost: np.ndarray) -> None:
    """Load min cost·x s.t. row_lo <= A x <= row_hi, col_lo <= x <= col_hi (arrays passed as is)."""
    csc = sp.csc_matrix(A)
    n = int(csc.shape[1])
    h.passModel(n, int(csc.shape[0]), int(csc.nnz), int(highspy.MatrixFormat.kColwise),
                int(highspy.ObjSense.kMinimize), 0.0,
                np.ascontiguousarray(cost, dtype=float), np.ascontiguousarray(col_lo, dtype=float),
                np.ascontiguousarray(col_hi, dtype=float), np.ascontiguousarray(row_lo, dtype=float),
                np.ascontiguousarray(row_hi, dtype=float), csc.indptr.astype(np.int32),
                csc.indices.astype(np.int32), csc.data.astype(float), np.zeros(n, dtype=np.int32))


# ---------------------------------------------------------------------- the decomposed attack

def _propagate(B: sp.csr_matrix, b: np.ndarray, sweeps: int = _PROPAGATE_SWEEPS) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on every cell implied by the equations and x >= 0 (bound propagation).

    Each sweep applies every equation to the current bounds: a cell with coefficient a on a
    line is (b - the rest of the line) / a, so it lies between what the other cells' bounds
    allow. Every step is implied by one equation and bounds already proved, so the result is
    a relaxation: lower <= the LP minimum and upper >= the LP maximum of every cell. (It is
    the single-equation bound first, then its consequences; on tables with margins it is
    very often equal to the LP optimum, which a feasible point attaining it then proves.)
    Stops when a sweep tightens nothing (or after `sweeps`; bounds so far are still valid).
    """
    k = B.shape[1]
    B = B.tocsr()
    lower = np.zeros(k)
    upper = np.full(k, np.inf)
    rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
    cols, vals = B.indices, B.data
    pos = vals > 0
    for _ in range(sweeps):
        # Per line: the least and greatest value of sum(a x) (infinite terms counted apart).
        fin_u = np.where(np.isinf(upper), 0.0, upper)
        inf_u = np.isinf(upper)[cols]
        lo_t = np.where(pos, vals * lower[cols], vals * fin_u[cols])
        hi_t = np.where(pos, vals * fin_u[cols], vals * lower[cols])
        lo_inf = ~pos & inf_u
        hi_inf = pos & inf_u
        m = B.shape[0]
        act_lo = np.bincount(rows, lo_t, minlength=m)
        act_hi = np.bincount(rows, hi_t, minlength=m)
        n_lo = np.bincount(rows, lo_inf, minlength=m)
        n_hi = np.bincount(rows, hi_inf, minlength=m)
        # The rest of the line (without this entry): its least and greatest activity.
        rest_lo = act_lo[rows] - lo_t
        rest_hi = act_hi[rows] - hi_t
        rest_lo_inf = (n_lo[rows] - lo_inf) > 0
        rest_hi_inf = (n_hi[rows] - hi_inf) > 0
        # a x = b - rest: for a > 0, x <= (b - rest_lo)/a and x >= (b - rest_hi)/a; a < 0 swaps.
        num_up = np.where(pos, b[rows] - rest_lo, b[rows] - rest_hi)
        num_dn = np.where(pos, b[rows] - rest_hi, b[rows] - rest_lo)
        up = np.where(np.where(pos, rest_lo_inf, rest_hi_inf), np.inf, num_up / vals)
        dn = np.where(np.where(pos, rest_hi_inf, rest_lo_inf), -np.inf, num_dn / vals)
        new_u = upper.copy()
        new_l = lower.copy()
        np.minimum.at(new_u, cols, up)
        np.maximum.at(new_l, cols, dn)
        scale = 1e-9 * np.maximum(1.0, np.abs(np.where(np.isinf(upper), 0.0, upper)))
        changed = bool(np.any(new_u < upper - scale) or np.any(new_l > lower + scale))
        upper, lower = new_u, np.maximum(new_l, 0.0)
        if not changed:
            break
    return lower, upper


def _solve_block(B: sp.csr_matrix, b: np.ndarray, comp: np.ndarray, tasks: np.ndarray | None,
                 need: np.ndarray | None = None, batches: bool = True, stop: bool = False,
                 basis: tuple[np.ndarray, np.ndarray] | None = None, integer: bool = False) -> tuple:
    """Min and max of every cell of a block-diagonal LP (components `comp`), warm-started.

    Every cell first gets bounds by propagation (`_propagate`: a relaxation, no LP optimum lies
    outside them). Every LP solution met on the way is a feasible table consistent with what is
    published, so a witness: it bounds each cell's maximum from below and its minimum from
    above, and a cell whose witnesses reach its propagated bound has that bound as its exact
    optimum without an LP of its own. Witnesses come from a first vertex (least total), the
    batched rounds and every LP solved below. One solve serves one open (cell, sense) problem
    in every component at once: the components share no equation, so minimising a sum of one
    cell per component minimises each. `tasks` (bool, k x 2) limits the work to
    some problems (a worker's share); the others are left NaN.

    With `need` (per cell; inf = exact), a cell two feasible points already show to be at
    least that wide (after rounding inward when `integer`) is left there: its interval is the
    span of those points, inside the exact one (a proof of width, marked inexact unless both
    ends met their propagated bounds). Spreading rounds find those points first: one LP pushes
    every cell still unproved towards the bound its witnesses are farther from. A cell they do
    not prove gets its exact min and max as below, so a cell reported short is exactly short.

    `batches=False` skips the rounds (a worker given the problems they left); `stop` returns
    after them, with the mask of problems still open and the last basis as seventh and eighth
    items (for splitting those between workers, who start from `basis` rather than a first
    vertex of their own). Returns (lo, hi, solves, consistent, certified, inexact[, want, basis]).
    """
    k = B.shape[1]
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    inexact = np.zeros(k, dtype=bool)
    want = np.ones((k, 2), dtype=bool) if tasks is None else tasks.copy()
    L, U = _propagate(B, b)
    h = new_highs()
    pass_lp(h, B, b, b, np.zeros(k), np.full(k, np.inf), np.zeros(k))
    solves = 0
    certified = 0
    # Cells a ray (a perturbation that keeps every equation, >= 0) can grow without limit.
    # (A cell with a finite propagated bound is bounded; only the others need the ray test.)
    unb = _unbounded(B) if np.isinf(U).any() else np.zeros(k, dtype=bool)
    hi[unb] = np.inf
    want[unb, 1] = False
    seen_lo = np.full(k, np.inf)
    seen_hi = np.where(unb, np.inf, -np.inf)
    OPT = highspy.HighsModelStatus.kOptimal

    def harvest(x: np.ndarray) -> int:
        np.minimum(seen_lo, x, out=seen_lo)
        np.maximum(seen_hi, x, out=seen_hi)
        got_lo = want[:, 0] & (seen_lo <= L + _CERT)
        got_hi = want[:, 1] & (seen_hi >= U - _CERT)
        lo[got_lo] = L[got_lo]
        hi[got_hi] = U[got_hi]
        want[got_lo, 0] = False
        want[got_hi, 1] = False
        if need is not None:
            # Width as the attacker's rounded interval would show it: the proof must survive rounding.
            slo, shi = (np.ceil(seen_lo - 1e-6), np.floor(seen_hi + 1e-6)) if integer else (seen_lo, seen_hi)
            with np.errstate(invalid="ignore"):
                wide = want.any(axis=1) & (shi - slo >= need - 1e-9)
            fill_lo, fill_hi = wide & np.isnan(lo), wide & np.isnan(hi)
            lo[fill_lo] = seen_lo[fill_lo]
            hi[fill_hi] = seen_hi[fill_hi]
            inexact[fill_lo | fill_hi] = True
            want[wide] = False
        return int(got_lo.sum() + got_hi.sum())

    allc = np.arange(k, dtype=np.int32)
    if basis is not None:
        # A worker given the parent's last basis (it already harvested that vertex and the
        # ones before): the problems left start from there, no first vertex of their own.
        _set_basis(h, basis)
    else:
        # A first vertex: most cells sit at zero in it (a vertex has at most rank(B) non-zeros).
        h.changeColsCost(k, allc, np.ones(k))
        st = _first_vertex(h, k)
        solves += 1
        if st == highspy.HighsModelStatus.kInfeasible:
            out = (np.zeros(k), np.full(k, np.inf), solves, False, certified, inexact)
            return (*out, np.zeros((k, 2), dtype=bool), None) if stop else out
        if st == OPT:
            certified += harvest(np.asarray(h.getSolution().col_value))
        h.changeColsCost(k, allc, np.zeros(k))
    if need is not None and batches:
        # Spreading rounds (proof of width): each unproved cell is pushed towards the bound its
        # witnesses so far are farther from, all in one LP, whether or not they share equations
        # (a width needs two distant tables, not an optimum). On the 50 x 50 x 20 benchmark's
        # 7,512-cell component six rounds prove every cell 5 wide (~9 s with the first vertex),
        # where the batched rounds below (disjoint cells, for exact optima) took ~35 s to leave 7.
        fin = np.isfinite(need)
        for _ in range(_SPREAD_ROUNDS):
            open_ = want.any(axis=1) & fin
            if not open_.any():
                break
            idx = np.flatnonzero(open_).astype(np.int32)
            up = (U[idx] - seen_hi[idx]) >= (seen_lo[idx] - L[idx])
            h.changeColsCost(len(idx), idx, np.where(up, -1.0, 1.0))
            st = _first_vertex(h, k)
            solves += 1
            if st == OPT:
                certified += harvest(np.asarray(h.getSolution().col_value))
            h.changeColsCost(len(idx), idx, np.zeros(len(idx)))
            if st != OPT or int((want.any(axis=1) & fin).sum()) == len(idx):
                break  # nothing proved: the cells left get their exact min and max below
    # Batched certificate rounds: push many cells sharing no equation towards their bounds at
    # once; a vertex reaching a cell's propagated bound proves that cell's optimum. The
    # rest get an LP of their own below. Stop when a round proves too little to pay its solve.
    tried = np.zeros((k, 2), dtype=bool)
    for _ in range(_MAX_BATCH_ROUNDS if batches else 0):
        col = 1 if (want[:, 1] & ~tried[:, 1]).any() else 0
        pick = _disjoint_open(B, want[:, col] & ~tried[:, col])
        if len(pick) < _MIN_BATCH:
            break
        tried[pick, col] = True
        sense = np.full(len(pick), -1.0 if col == 1 else 1.0)
        h.changeColsCost(len(pick), pick, sense)
        h.run()
        solves += 1
        ok = h.getModelStatus() == OPT
        gained = harvest(np.asarray(h.getSolution().col_value)) if ok else 0
        certified += gained
        h.changeColsCost(len(pick), pick, np.zeros(len(pick)))
        if gained < _MIN_BATCH // 2:
            break
    if stop:
        return lo, hi, solves, True, certified, inexact, want, _get_basis(h)
    order = np.argsort(comp, kind="stable")
    while want.any():
        # One open problem per component: the first cell still wanting one, max before min.
        open_cells = order[want[order].any(axis=1)]
        pick = open_cells[np.unique(comp[open_cells], return_index=True)[1]].astype(np.int32)
        sense = np.where(want[pick, 1], -1.0, 1.0)
        h.changeColsCost(len(pick), pick, sense)
        h.run()
        solves += 1
        if h.getModelStatus() != OPT:
            h.clearSolver()  # numerical trouble: retry from a cold start
            h.run()
        if h.getModelStatus() == OPT:
            x = np.asarray(h.getSolution().col_value)
            got = x[pick]
            mins, maxs = pick[sense > 0], pick[sense < 0]
            lo[mins], hi[maxs] = got[sense > 0], got[sense < 0]
            want[mins, 0] = False
            want[maxs, 1] = False
            seen_lo[mins] = np.minimum(seen_lo[mins], lo[mins])
            seen_hi[maxs] = np.maximum(seen_hi[maxs], hi[maxs])
            certified += harvest(x)
            h.changeColsCost(len(pick), pick, np.zeros(len(pick)))
            continue
        # Still no optimum: one problem at a time; a problem that fails alone too reports its
        # cell as exposed (width 0), so the gate blocks rather than trusts it.
        h.changeColsCost(len(pick), pick, np.zeros(len(pick)))
        for c, s in zip(pick.tolist(), sense.tolist(), strict=True):
            h.changeColCost(c, s)
            h.clearSolver()
            h.run()
            solves += 1
            st = h.getModelStatus()
            if st == OPT:
                (lo if s > 0 else hi)[c] = h.getObjectiveValue() * s
            elif st == highspy.HighsModelStatus.kUnbounded and s < 0:
                hi[c] = np.inf
            else:
                lo[c] = hi[c] = 0.0
                inexact[c] = False
                want[c, :] = False
            want[c, 0 if s > 0 else 1] = False
            h.changeColCost(c, 0.0)
    return lo, hi, solves, True, certified, inexact


IPM_FIRST_CELLS = 1000
"From this many cells the first vertex comes from the interior-point solver plus crossover."


def _first_vertex(h: highspy.Highs, k: int) -> highspy.HighsModelStatus:
    """Solve the loaded LP (the least total, or a spreading round) to a vertex, leaving a basis
    for the warm starts.

    On a large component primal simplex from the slack basis needs many pivots (10,281 on the
    50x50x20 benchmark's 7,512-cell component, ~4.5 s); the interior-point solver followed by
    crossover reaches an optimal vertex with a valid basis in ~1.1 s. Small blocks keep the
    simplex (the interior-point set-up would cost more than it saves).
    """
    if k < IPM_FIRST_CELLS:
        h.run()
        return h.getModelStatus()
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "on")
    h.run()
    h.setOptionValue("solver", "simplex")
    st = h.getModelStatus()
    if st != highspy.HighsModelStatus.kOptimal or not h.getBasis().valid:
        h.clearSolver()  # no vertex from crossover: the simplex from scratch decides
        h.run()
        st = h.getModelStatus()
    return st


def _get_basis(h: highspy.Highs) -> tuple[np.ndarray, np.ndarray]:
    """The current basis as plain status codes (picklable, for a worker)."""
    bs = h.getBasis()
    return (np.array([int(x) for x in bs.col_status], dtype=np.int8),
            np.array([int(x) for x in bs.row_status], dtype=np.int8))


def _set_basis(h: highspy.Highs, basis: tuple[np.ndarray, np.ndarray]) -> None:
    bs = highspy.HighsBasis()
    bs.col_status = [highspy.HighsBasisStatus(int(x)) for x in basis[0]]
    bs.row_status = [highspy.HighsBasisStatus(int(x)) for x in basis[1]]
    bs.valid = True
    h.setBasis(bs)


_MIN_BATCH = 8
_MAX_BATCH_ROUNDS = 400


def _disjoint_open(B: sp.csr_matrix, open_: np.ndarray) -> np.ndarray:
    """Open cells sharing no equation: those first (lowest index) among the open cells of
    every line they lie on (vectorised; two such cells cannot share a line)."""
    k = B.shape[1]
    key = np.where(open_, np.arange(k), k)
    ent = key[B.indices]
    nonempty = np.diff(B.indptr) > 0
    first = np.full(B.shape[0], k)
    first[nonempty] = np.minimum.reduceat(ent, B.indptr[:-1][nonempty])
    rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
    ok = np.ones(k, dtype=bool)
    np.logical_and.at(ok, B.indices, first[rows] == B.indices)
    return np.flatnonzero(ok & open_).astype(np.int32)


def _unbounded(B: sp.csr_matrix) -> np.ndarray:
    """Cells some ray (d >= 0, B d = 0) increases: their maximum is infinite.

    Maximise the sum of d over the cells not yet known unbounded, within 0 <= d <= 1: any
    optimum above zero exhibits a ray through new cells; repeat until none is left.
    """
    k = B.shape[1]
    found = np.zeros(k, dtype=bool)
    m = B.shape[0]
    h = new_highs()
    pass_lp(h, B, np.zeros(m), np.zeros(m), np.zeros(k), np.ones(k), -np.ones(k))
    while True:
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal or h.getObjectiveValue() > -_TOL:
            return found
        d = np.asarray(h.getSolution().col_value)
        new = (d > _TOL) & ~found
        if not new.any():
            return found
        found |= new
        idx = np.flatnonzero(new).astype(np.int32)
        h.changeColsCost(len(idx), idx, np.zeros(len(idx)))


def _fresh_scheduler() -> None:
    """A forked worker inherits HiGHS's thread-pool state but not its threads: start anew."""
    reset = getattr(getattr(getattr(highspy, "_core", None), "_Highs", None), "resetGlobalScheduler", None)
    if reset is not None:
        reset(True)


def _work(args: tuple) -> tuple:
    B, b, comp, tasks, need, batches, basis, integer = args
    return _solve_block(B, b, comp, tasks, need, batches=batches, basis=basis, integer=integer)


def attack(model: TableModel, published: np.ndarray, *, integer: bool = True, workers: int | None = None,
           need: np.ndarray | None = None, exact: bool = False, proof_from: int | None = None) -> Audit:
    """Min and max of every suppressed (NaN) cell given every published value and additivity.

    The attacker knows the structure, each published value and that cells are non-negative.
    A cell's interval depends only on its component of the graph linking suppressed cells
    through the equations they share, so the LP relaxation is solved per component; small
    components are batched into one block-diagonal LP, and a large problem is split between
    `workers` processes (default: up to 2 cores). Every bound is an LP optimum or a feasible
    point meeting a bound one equation implies: each is proved, none estimated.

    `need` (per cell, the width each must keep; NaN = none) turns the audit of components of
    `proof_from` (default WIDTH_PROOF_CELLS) cells or more into a proof of width: a cell two
    feasible tables show at least that wide is not solved further, its interval reported as
    their span (inside the exact one, so its width is a proved lower bound; `Audit.inexact`
    marks such cells). A cell not proved so gets its exact interval, so the pass/fail verdict
    is the exact audit's. Smaller components stay exact; `proof_from=0` proves widths
    everywhere (the protection's screen), `exact=True` (or no `need`) gives every exact interval.
    """
    v = np.asarray(published, dtype=float)
    S = np.isnan(v)
    lower = np.where(S, 0.0, v)
    upper = np.where(S, np.inf, v)
    A = model.A.tocsc()
    known = np.where(S, 0.0, v)
    scale = np.maximum(1.0, np.abs(A) @ np.abs(known))
    # Elimination: a line with a single suppressed cell gives that cell's exact value; take it
    # as known and repeat (the forced steps of Gaussian elimination). What remains is the LP.
    exact_cells, solved_value, ok = eliminate(A, S, known)
    known = np.where(exact_cells, solved_value, known)
    lower[exact_cells] = upper[exact_cells] = solved_value[exact_cells]
    rhs = -(A @ known)
    open_ = S & ~exact_cells
    sidx = np.flatnonzero(open_)
    AS = A[:, sidx].tocsr()
    touched = np.diff(AS.indptr) > 0
    consistent = ok and bool(np.all(np.abs(rhs[~touched]) <= 1e-6 * scale[~touched]))
    inexact = np.zeros(len(v), dtype=bool)
    if len(sidx) == 0:
        return Audit(lower, upper, S, consistent, 0, component=np.zeros(len(v), dtype=np.int64),
                     inexact=inexact)
    rows = np.flatnonzero(touched)
    B = AS[rows]
    r, k = B.shape
    adj = sp.bmat([[None, B], [B.T, None]]).tocsr()
    adj.data = np.ones_like(adj.data)
    ncomp, labels = connected_components(adj, directed=False)
    row_lab, col_lab = labels[:r], labels[r:]
    sizes = np.bincount(col_lab, minlength=ncomp)
    # Per open cell, the width to prove (inf: exact interval), by the size of its component.
    prove = None
    proof_from = WIDTH_PROOF_CELLS if proof_from is None else proof_from
    if need is not None and not exact:
        nv = np.nan_to_num(np.asarray(need, dtype=float)[sidx], nan=np.inf)
        prove = np.where(sizes[col_lab] >= proof_from, nv, np.inf)
    # Components in batches: whole components, in order, up to BATCH_CELLS cells per batch.
    comp_order = np.argsort(-sizes, kind="stable")
    batches: list[list[int]] = []
    fill = BATCH_CELLS + 1
    for c in comp_order:
        if sizes[c] == 0:
            continue
        if fill + sizes[c] > BATCH_CELLS:
            batches.append([])
            fill = 0
        batches[-1].append(int(c))
        fill += int(sizes[c])
    jobs = []
    for batch in batches:
        in_b = np.zeros(ncomp, dtype=bool)
        in_b[batch] = True
        vc = np.flatnonzero(in_b[col_lab])
        rc = np.flatnonzero(in_b[row_lab])
        nj = None if prove is None or not np.isfinite(prove[vc]).any() else prove[vc]
        jobs.append((vc, B[rc][:, vc].tocsr(), rhs[rows[rc]], col_lab[vc], nj))
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    results = _run_jobs(jobs, n_workers, integer)
    solves = certified = 0
    for (vc, *_), (lo, hi, s, ok, cert, inex) in zip(jobs, results, strict=True):
        solves += s
        certified += cert
        consistent &= ok
        if integer:
            lo = np.ceil(lo - 1e-6)
            hi = np.where(np.isinf(hi), hi, np.floor(hi + 1e-6))
        lower[sidx[vc]] = np.maximum(lo, 0.0)
        upper[sidx[vc]] = hi
        inexact[sidx[vc]] = inex
    component = np.zeros(len(v), dtype=np.int64)
    component[sidx] = sizes[col_lab]
    asked = np.full(len(v), np.nan)
    if prove is not None:
        asked[sidx] = np.where(np.isinf(prove), np.nan, prove)
    return Audit(lower, upper, S, consistent, solves, int(ncomp), int(sizes.max()), certified, component, inexact,
                 asked, proof_from)


def eliminate(A: sp.csc_matrix, S: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Suppressed cells the published values determine exactly, and their values.

    Repeatedly takes every line holding one undetermined suppressed cell: that cell equals the
    line's published rest (parts minus total). Vectorised per sweep; the number of sweeps is
    the depth of the chain of lines. Returns (determined, values, consistent): a negative or
    conflicting value means the published files admit no table at all.
    """
    Ar = A.tocsr()
    absA = abs(Ar)
    exact = np.zeros(len(S), dtype=bool)
    val = np.where(S, 0.0, known)
    ok = True
    while True:
        open_ = (S & ~exact).astype(float)
        count = absA @ open_
        single = np.flatnonzero(count == 1)
        if len(single) == 0:
            return exact, val, ok
        sub = Ar[single]
        rows = np.repeat(np.arange(len(single)), np.diff(sub.indptr))
        hit = open_[sub.indices] > 0
        cell, coef = sub.indices[hit], sub.data[hit]
        rest = -(sub @ np.where(S & ~exact, 0.0, val))
        got = rest[rows[hit]] / coef
        # Two lines may determine one cell: they must agree, else the files are inconsistent.
        order = np.argsort(cell, kind="stable")
        cell, got = cell[order], got[order]
        first = np.unique(cell, return_index=True)[1]
        lo_v = np.minimum.reduceat(got, first)
        hi_v = np.maximum.reduceat(got, first)
        cells = cell[first]
        if np.any(hi_v - lo_v > 1e-6 * np.maximum(1.0, np.abs(hi_v))) or np.any(lo_v < -1e-6):
            ok = False
        val[cells] = np.maximum(lo_v, 0.0)
        exact[cells] = True


def _run_jobs(jobs: list[tuple], n_workers: int, integer: bool = False) -> list[tuple]:
    """Solve the batches; with 2+ workers and enough work, split the problems between processes.

    A giant component first gets its first vertex and batched rounds here (they prove most
    bounds at once and would only be repeated in each worker); the problems they leave are
    then split between forked workers, each rebuilding the same LP and warm-starting its share
    from the basis the rounds ended on (no first vertex of its own). A batch proving widths is
    never split (its result must not depend on the number of cores); it runs whole in a worker
    beside the other batches.
    """
    total = sum(len(j[0]) for j in jobs)
    if n_workers < 2 or total * 2 < PARALLEL_TASKS:
        return [_solve_block(Bj, bj, cj, None, nj, integer=integer) for _, Bj, bj, cj, nj in jobs]
    units: list[tuple[int, tuple]] = []
    merged: list[list] = [[None, None, 0, True, 0, None] for _ in jobs]
    for ji, (vc, Bj, bj, cj, nj) in enumerate(jobs):
        k = len(vc)
        # A proof of width stays in one process: which witness proves a cell depends on the
        # order problems are solved in, and `release check` must find the report's intervals
        # whatever its number of cores (exact intervals are the same however they are split).
        if k * 2 >= PARALLEL_TASKS and nj is None:
            lo, hi, s, ok, cert, inex, want, basis = _solve_block(Bj, bj, cj, None, nj, stop=True, integer=integer)
            merged[ji] = [lo, hi, s, ok, cert, inex]
            open_rows = np.flatnonzero(want.any(axis=1))
            parts = n_workers if len(open_rows) >= _SPLIT_MIN else 1
            for part in range(parts):
                t = np.zeros((k, 2), dtype=bool)
                rows = open_rows[part::parts]
                t[rows] = want[rows]
                if t.any():
                    units.append((ji, (Bj, bj, cj, t, nj, False, basis, integer)))
        else:
            units.append((ji, (Bj, bj, cj, None, nj, True, None, integer)))
    if len(units) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_fresh_scheduler) as ex:
            outs = list(ex.map(_work, [u[1] for u in units]))
    else:
        outs = [_work(u[1]) for u in units]
    for (ji, _), (lo, hi, s, ok, cert, inex) in zip(units, outs, strict=True):
        m = merged[ji]
        m[0] = lo if m[0] is None else np.where(np.isnan(m[0]), lo, m[0])
        m[1] = hi if m[1] is None else np.where(np.isnan(m[1]), hi, m[1])
        m[2] += s
        m[3] &= ok
        m[4] += cert
        m[5] = inex if m[5] is None else m[5] | inex  # a worker marks only cells of its share
    return [tuple(m) for m in merged]


_SPLIT_MIN = 200
"Below this many cells with open problems a giant component finishes in one process."


# ---------------------------------------------------------------------- the reference attack

def attack_whole(model: TableModel, published: np.ndarray, *, integer: bool = True) -> Audit:
    """The attack without decomposition or shortcuts: min and max of every suppressed cell over
    one LP of the whole table (every equation, every suppressed cell), one solve each. The
    reference the decomposed `attack` must equal; practical on small tables only."""
    v = np.asarray(published, dtype=float)
    S = np.isnan(v)
    lower = np.where(S, 0.0, v)
    upper = np.where(S, np.inf, v)
    sidx = np.flatnonzero(S)
    A = model.A.tocsc()
    known = np.where(S, 0.0, v)
    rhs = -(A @ known)
    B = A[:, sidx]
    k = len(sidx)
    if k == 0:
        return Audit(lower, upper, S, bool(np.allclose(rhs, 0)), 0)
    h = new_highs()
    pass_lp(h, B, rhs, rhs, np.zeros(k), np.full(k, np.inf), np.zeros(k))
    consistent = True
    solves = 0
    for i in range(k):
        for sense in (1.0, -1.0):
            h.changeColCost(i, sense)
            h.run()
            solves += 1
            st = h.getModelStatus()
            if st == highspy.HighsModelStatus.kInfeasible:
                consistent = False
                val = 0.0 if sense > 0 else np.inf
            elif st == highspy.HighsModelStatus.kUnbounded:
                val = np.inf
            else:
                val = h.getObjectiveValue() * sense
            if sense > 0:
                lower[sidx[i]] = max(val, 0.0)
            else:
                upper[sidx[i]] = val
            h.changeColCost(i, 0.0)
    if integer:
        lower[sidx] = np.ceil(lower[sidx] - 1e-6)
        upper[sidx] = np.where(np.isinf(upper[sidx]), upper[sidx], np.floor(upper[sidx] + 1e-6))
    return Audit(lower, upper, S, consistent, solves)
