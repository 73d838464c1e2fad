"""Local recoding: top-down multidimensional partitioning (Mondrian's idea) constrained to the policy's
hierarchies, so every published value is a hierarchy node; each class meets k, l and t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from release.anonymize.lattice import Problem
from release.anonymize.models import judge_classes


@dataclass
class LocalResult:
    """Per bottom row of the problem: the level and the code at that level of every quasi-identifier."""

    levels: np.ndarray
    "(bottom rows, quasi-identifiers) level of the published value"
    codes: np.ndarray
    "(bottom rows, quasi-identifiers) code of the published value at that level"
    partitions: int
    loss: float
    "precision loss: mean over records of the weighted level / height"

    def labels(self, prob: Problem, j: int) -> np.ndarray:
        """Published label of quasi-identifier j per record."""
        q = prob.qis[j]
        offsets = np.cumsum([0] + [len(lab) for lab in q.labels[:-1]])
        every = np.concatenate(q.labels)
        per_row = every[offsets[self.levels[:, j]] + self.codes[:, j]]
        return per_row[prob.record_row]


def _fails(prob: Problem, rows: np.ndarray, cls: np.ndarray, n_cls: int) -> np.ndarray:
    """Per class (ids 0..n_cls-1 over `rows` of the bottom table): fails k, l or t."""
    t = prob.bottom
    w = t.w[rows]
    sizes = np.bincount(cls, weights=w, minlength=n_cls)
    if not prob.sensitive:
        return sizes < prob.k
    sens = [s[rows] for s in t.sens[:prob.n_sens]]
    return judge_classes(cls, n_cls, w, sizes, prob.k, prob.sensitive, sens).fail


def local_recode(prob: Problem) -> LocalResult | None:
    """Split partitions from the top ('*' everywhere) down the hierarchies while the models hold.

    A partition at node (level L_j, code c_j) per column is split on the column whose split keeps the
    most records at finer detail (weighted): its records go to their level L_j - 1 values; values whose
    records meet every model become partitions of their own; the others stay together at the parent
    value (a remainder that must itself meet the models, else the smallest children join it). A column
    whose records all share one child is refined for free. Returns None when the whole file fails
    (no generalization can then help). Work is vectorized per partition; the loop is over partitions.
    """
    t = prob.bottom
    m = len(prob.qis)
    rows_all = np.arange(t.rows)
    if t.rows == 0 or _fails(prob, rows_all, np.zeros(t.rows, dtype=np.int64), 1)[0]:
        return None
    heights = [q.height for q in prob.qis]
    maps = [np.stack(q.maps) for q in prob.qis]  # (levels, card0): code of each level-0 value per level
    cards = [[len(lab) for lab in q.labels] for q in prob.qis]
    cost = prob.weights / np.maximum(np.asarray(heights, dtype=float), 1.0)
    levels = np.zeros((t.rows, m), dtype=np.int64)
    codes = np.zeros((t.rows, m), dtype=np.int64)
    stack: list[tuple[np.ndarray, list[int], list[int], frozenset[int]]] = [
        (rows_all, list(heights), [0] * m, frozenset())]
    parts = 0
    while stack:
        rows, lev, code, done = stack.pop()
        w = t.w[rows]
        # Free refinements: a column whose records share one value one level down.
        changed = True
        while changed:
            changed = False
            for j in range(m):
                if lev[j] > 0 and j not in done:
                    child = maps[j][lev[j] - 1][t.qi[j][rows]]
                    if child.min() == child.max():
                        lev[j] -= 1
                        code[j] = int(child[0])
                        changed = True
        best: tuple[float, int, np.ndarray, np.ndarray, np.ndarray] | None = None
        cands = []
        for j in range(m):
            if lev[j] == 0 or j in done:
                continue
            child = maps[j][lev[j] - 1][t.qi[j][rows]]
            counts = np.bincount(child, weights=w, minlength=cards[j][lev[j] - 1])
            if not (counts >= prob.k).any():
                continue
            uniq = np.flatnonzero(counts)
            lut = np.empty(len(counts), dtype=np.int64)
            lut[uniq] = np.arange(len(uniq))
            cid = lut[child]
            sizes = counts[uniq]
            # Mondrian's rule on hierarchies: split the widest column first, the one whose partition
            # spans the largest share of its values (here: its level, weighted), then the largest gain.
            width = lev[j] / max(heights[j], 1) * prob.weights[j]
            gain = float(sizes[sizes >= prob.k].sum()) * cost[j]
            cands.append((width, gain, j, uniq, cid, sizes))
        cands.sort(key=lambda c: (-c[0], -c[1]))
        for _, gain, j, uniq, cid, sizes in cands:
            split = _split(prob, rows, cid, len(uniq), sizes)
            if split is not None:
                best = (gain, j, uniq, cid, split)
                break
        if best is None:
            levels[rows] = lev
            codes[rows] = code
            parts += 1
            continue
        _, j, uniq, cid, keep = best
        rest = ~keep[cid]
        if rest.any():
            stack.append((rows[rest], list(lev), list(code), done | {j}))
        for c in np.flatnonzero(keep):
            sub = rows[cid == c]
            lv, cd = list(lev), list(code)
            lv[j] -= 1
            cd[j] = int(uniq[c])
            stack.append((sub, lv, cd, done))
    n = float(t.w.sum())
    loss = float((t.w[:, None] * levels * cost[None, :]).sum()) / (n * float(prob.weights.sum())) if n else 0.0
    return LocalResult(levels=levels, codes=codes, partitions=parts, loss=loss)


def _split(prob: Problem, rows: np.ndarray, cid: np.ndarray, n_child: int, sizes: np.ndarray) -> np.ndarray | None:
    """Which children become partitions of their own (the others form the remainder), or None when no
    child can leave the parent with the remainder still meeting every model."""
    fails = _fails(prob, rows, cid, n_child)
    keep = ~fails
    if not keep.any():
        return None
    rest = fails[cid]
    if rest.any():
        # The remainder must meet the models as one class: add the smallest kept children until it does.
        order = [int(c) for c in np.argsort(sizes) if keep[c]]
        while True:
            if not _fails(prob, rows[rest], np.zeros(int(rest.sum()), dtype=np.int64), 1)[0]:
                break
            if not order:
                return None
            c = order.pop(0)
            keep[c] = False
            rest |= cid == c
        if not keep.any():
            return None
    return keep
