"""The linear-programming attacker: the interval each suppressed cell can be recomputed to."""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from release.tables.model import TableModel

_TOL = 1e-7


@dataclass
class Audit:
    """Attacker bounds per cell (published cells: their value); widths of suppressed cells."""

    lower: np.ndarray
    upper: np.ndarray
    suppressed: np.ndarray
    consistent: bool
    "False when the published values break additivity (tampering or a bug)."
    solves: int = 0

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def smallest_width(self) -> float | None:
        if not self.suppressed.any():
            return None
        return float(np.min(self.width[self.suppressed]))


def new_highs(strategy: int = 4) -> highspy.Highs:
    """A quiet HiGHS instance; strategy 4 (primal simplex) suits repeated cost changes,
    1 (dual) repeated bound changes, both warm-started from the previous basis."""
    h = highspy.Highs()
    h.setOptionValue("simplex_strategy", strategy)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    # Many solves on one model differing in a cost or a bound: presolve would discard the
    # warm-start basis each time; hot-started dual/primal simplex is far faster here.
    h.setOptionValue("presolve", "off")
    return h


def pass_lp(h: highspy.Highs, A: sp.spmatrix, row_lo: np.ndarray, row_hi: np.ndarray, col_lo: np.ndarray,
            col_hi: np.ndarray, cost: np.ndarray) -> None:
    csc = sp.csc_matrix(A)
    lp = highspy.HighsLp()
    lp.num_col_ = int(csc.shape[1])
    lp.num_row_ = int(csc.shape[0])
    lp.col_cost_ = np.asarray(cost, dtype=float)
    lp.col_lower_ = np.asarray(col_lo, dtype=float)
    lp.col_upper_ = np.asarray(col_hi, dtype=float)
    lp.row_lower_ = np.asarray(row_lo, dtype=float)
    lp.row_upper_ = np.asarray(row_hi, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(float)
    h.passModel(lp)


def attack(model: TableModel, published: np.ndarray, *, integer: bool = True) -> Audit:
    """Min and max of every suppressed (NaN) cell given every published value and additivity.

    The attacker knows the structure, each published value and that cells are non-negative;
    the LP relaxation is solved per connected block of suppressed cells (blocks share no
    equation, so they are independent), warm-started across the cells of a block.
    """
    v = np.asarray(published, dtype=float)
    S = np.isnan(v)
    lower = np.where(S, 0.0, v)
    upper = np.where(S, np.inf, v)
    A = model.A.tocsc()
    known = np.where(S, 0.0, v)
    rhs = -(A @ known)
    AS = A[:, np.flatnonzero(S)].tocsr()
    touched = np.diff(AS.indptr) > 0
    scale = np.maximum(1.0, np.abs(A) @ np.abs(known))
    consistent = bool(np.all(np.abs(rhs[~touched]) <= 1e-6 * scale[~touched]))
    solves = 0
    sidx = np.flatnonzero(S)
    if len(sidx) == 0:
        return Audit(lower, upper, S, consistent, 0)
    rows = np.flatnonzero(touched)
    B = AS[rows]
    r, k = B.shape
    adj = sp.bmat([[None, B], [B.T, None]]).tocsr()
    adj.data = np.ones_like(adj.data)
    ncomp, labels = connected_components(adj, directed=False)
    row_lab, col_lab = labels[:r], labels[r:]
    order_r = np.argsort(row_lab, kind="stable")
    order_c = np.argsort(col_lab, kind="stable")
    rs = np.searchsorted(row_lab[order_r], np.arange(ncomp + 1))
    cs = np.searchsorted(col_lab[order_c], np.arange(ncomp + 1))
    h = new_highs()
    for c in range(ncomp):
        vc = order_c[cs[c]:cs[c + 1]]
        rc = order_r[rs[c]:rs[c + 1]]
        if len(vc) == 0:
            continue
        sub = B[rc][:, vc]
        b = rhs[rows[rc]]
        kk = len(vc)
        pass_lp(h, sub, b, b, np.zeros(kk), np.full(kk, np.inf), np.zeros(kk))
        lo = np.full(kk, np.nan)
        hi = np.full(kk, np.nan)
        for i in range(kk):
            for sense in (1.0, -1.0):
                if sense > 0 and not np.isnan(lo[i]):
                    continue
                h.changeColCost(i, sense)
                h.run()
                solves += 1
                st = h.getModelStatus()
                if st == highspy.HighsModelStatus.kInfeasible:
                    consistent = False
                    lo[:] = 0.0
                    hi[:] = np.inf
                    break
                if st == highspy.HighsModelStatus.kUnbounded:
                    hi[i] = np.inf
                elif st == highspy.HighsModelStatus.kOptimal:
                    x = np.asarray(h.getSolution().col_value)
                    # A vertex with a cell at zero proves that cell's minimum for free.
                    lo[(x <= _TOL) & np.isnan(lo)] = 0.0
                    if sense > 0:
                        lo[i] = x[i]
                    else:
                        hi[i] = x[i]
                else:
                    # Numerical trouble: retry from a cold start; if that fails too, report the
                    # cell as exposed (width 0) so the gate blocks rather than trusts it.
                    h.clearSolver()
                    h.run()
                    st2 = h.getModelStatus()
                    if st2 == highspy.HighsModelStatus.kOptimal:
                        x = np.asarray(h.getSolution().col_value)
                        (lo if sense > 0 else hi)[i] = x[i]
                    elif st2 == highspy.HighsModelStatus.kUnbounded and sense < 0:
                        hi[i] = np.inf
                    else:
                        lo[i] = hi[i] = 0.0
                h.changeColCost(i, 0.0)
            else:
                continue
            break
        if integer:
            lo = np.ceil(lo - 1e-6)
            hi = np.where(np.isinf(hi), hi, np.floor(hi + 1e-6))
        lower[sidx[vc]] = np.maximum(lo, 0.0)
        upper[sidx[vc]] = hi
    return Audit(lower, upper, S, consistent, solves)
