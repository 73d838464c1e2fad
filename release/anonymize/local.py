"""Local recoding: top-down multidimensional partitioning (Mondrian's idea) constrained to the policy's
hierarchies, so every published value is a hierarchy node, or for an ordered column (times, numbers)
an interval of its level-0 values; each class meets k, l and t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from release.anonymize.lattice import Problem
from release.anonymize.models import judge_classes


@dataclass
class LocalResult:
    """Per bottom row of the problem and quasi-identifier: the published hierarchy node (level, code),
    or for an ordered column the interval [lo, hi] of level-0 ranks (level -1)."""

    levels: np.ndarray
    "(bottom rows, quasi-identifiers) level of the published node; -1 where an interval is published"
    codes: np.ndarray
    "(bottom rows, quasi-identifiers) code of the published node at that level"
    lo: np.ndarray
    "(bottom rows, quasi-identifiers) rank of the interval's lowest level-0 value (-1: a node)"
    hi: np.ndarray
    "(bottom rows, quasi-identifiers) rank of the interval's highest level-0 value"
    order: list[np.ndarray | None]
    "per column: level-0 codes in rank order (None: the column is split along its hierarchy)"
    separators: list[str]
    partitions: int
    loss: float
    "precision loss: mean over records of the weighted share of the column's domain a value stands for"

    def labels(self, prob: Problem, j: int) -> np.ndarray:
        """Published label of quasi-identifier j per record."""
        q = prob.qis[j]
        order = self.order[j]
        if order is None:
            offsets = np.cumsum([0] + [len(lab) for lab in q.labels[:-1]])
            every = np.concatenate(q.labels)
            per_row = every[offsets[self.levels[:, j]] + self.codes[:, j]]
            return per_row[prob.record_row]
        r = len(order)
        key = self.lo[:, j] * r + self.hi[:, j]
        uk, inv = np.unique(key, return_inverse=True)
        lab0 = q.labels[0]
        sep = self.separators[j]
        # One label per distinct interval (a few thousand at most), then indexed per row.
        names = np.array([str(lab0[order[k // r]]) if k // r == k % r else
                          f"{lab0[order[k // r]]}{sep}{lab0[order[k % r]]}" for k in uk.tolist()], dtype=object)
        return names[inv][prob.record_row]


def _fails(prob: Problem, rows: np.ndarray, cls: np.ndarray, n_cls: int) -> np.ndarray:
    """Per class (ids 0..n_cls-1 over `rows` of the bottom table): fails k, l or t."""
    t = prob.bottom
    w = t.w[rows]
    sizes = np.bincount(cls, weights=w, minlength=n_cls)
    if not prob.sensitive:
        return sizes < prob.k
    sens = [s[rows] for s in t.sens[:prob.n_sens]]
    return judge_classes(cls, n_cls, w, sizes, prob.k, prob.sensitive, sens).fail


def local_recode(prob: Problem, ordered: list[np.ndarray | None] | None = None,
                 separators: list[str] | None = None) -> LocalResult | None:
    """Split partitions from the top ('*' everywhere) down while every class meets the models.

    `ordered[j]`, when given, ranks column j's level-0 codes (times, numbers): that column is split at
    the weighted median of its values, as Mondrian does, and published as the interval its partition
    holds. Any other column is split along its hierarchy: its records go to their values one level
    down; values whose records meet every model become partitions of their own; the others stay
    together at the parent value (a remainder that must itself meet the models, else the smallest
    children join it). A column whose records all share one child is refined for free. The column
    split first is the widest (Mondrian's rule): the largest weighted share of its domain its value
    stands for (values under the node, or the interval's span of ranks). Returns None when the whole file fails (no generalization can help then). Work is
    vectorized per partition; the loop is over partitions, never over records.
    """
    t = prob.bottom
    m = len(prob.qis)
    ordered = list(ordered) if ordered is not None else [None] * m
    seps = list(separators) if separators is not None else ["-"] * m
    rows_all = np.arange(t.rows)
    if t.rows == 0 or _fails(prob, rows_all, np.zeros(t.rows, dtype=np.int64), 1)[0]:
        return None
    heights = [q.height for q in prob.qis]
    maps = [np.stack(q.maps) for q in prob.qis]  # (levels, card0): code of each level-0 value per level
    cards = [[len(lab) for lab in q.labels] for q in prob.qis]
    # Level-0 values under each node: how much of its column's domain a node stands for (its width).
    leaves = [[np.bincount(mp, minlength=c) for mp, c in zip(q.maps, cards[j], strict=True)]
              for j, q in enumerate(prob.qis)]
    # Rank of each bottom row's value in the ordered columns; rank -> level-0 code.
    rank = [None if o is None else _inverse(o)[t.qi[j]] for j, o in enumerate(ordered)]
    n_rank = [len(o) if o is not None else 0 for o in ordered]
    cost = prob.weights / np.maximum(np.asarray(heights, dtype=float), 1.0)
    levels = np.zeros((t.rows, m), dtype=np.int64)
    codes = np.zeros((t.rows, m), dtype=np.int64)
    lo = np.full((t.rows, m), -1, dtype=np.int64)
    hi = np.full((t.rows, m), -1, dtype=np.int64)
    stack: list[tuple[np.ndarray, list[int], list[int], frozenset[int]]] = [
        (rows_all, list(heights), [0] * m, frozenset())]
    parts = 0
    while stack:
        rows, lev, code, done = stack.pop()
        w = t.w[rows]
        changed = True
        while changed:  # free refinements: a column whose records share one value one level down
            changed = False
            for j in range(m):
                if rank[j] is None and lev[j] > 0 and j not in done:
                    child = maps[j][lev[j] - 1][t.qi[j][rows]]
                    if child.min() == child.max():
                        lev[j] -= 1
                        code[j] = int(child[0])
                        changed = True
        cands: list[tuple[float, int]] = []
        for j in range(m):
            if j in done:
                continue
            rk = rank[j]
            if rk is not None:
                r = rk[rows]
                lo_r, hi_r = int(r.min()), int(r.max())
                if lo_r < hi_r:
                    cands.append((float(hi_r - lo_r) / max(n_rank[j] - 1, 1) * prob.weights[j], j))
            elif lev[j] > 0:
                cands.append((float(leaves[j][lev[j]][code[j]] - 1) / max(cards[j][0] - 1, 1) * prob.weights[j], j))
        chosen = None
        best_gain = 0.0
        for width, j in cands:
            got = _try_split(prob, rows, w, j, rank[j], lev, maps, cards)
            if got is None:
                if rank[j] is None:
                    # A node none of whose children can leave it now: in a sub-partition they are smaller still.
                    done = done | {j}
                continue
            # Information regained per halving of the partition: a split into many small pieces uses up
            # the room (k, l) later splits on other columns would need.
            gain = width * float(w.sum()) - sum(_width(j, piece, rank[j], lev, code, leaves, cards, n_rank)
                                                * float(t.w[piece[0]].sum()) * prob.weights[j] for piece in got[1])
            gain /= np.log2(max(len(got[1]), 2))
            if chosen is None or gain > best_gain:
                chosen, best_gain = got, gain
        if chosen is None:
            levels[rows] = lev
            codes[rows] = code
            for j in range(m):
                rk = rank[j]
                if rk is not None:
                    r = rk[rows]
                    lo[rows, j], hi[rows, j] = int(r.min()), int(r.max())
                    levels[rows, j] = -1
            parts += 1
            continue
        j, pieces = chosen
        for sub, new_code, same in pieces:
            lv, cd = list(lev), list(code)
            if rank[j] is None and not same:
                lv[j] -= 1
                cd[j] = new_code
            stack.append((sub, lv, cd, done | {j} if same else done))
    loss = _loss(prob, levels, lo, hi, ordered, cost)
    return LocalResult(levels=levels, codes=codes, lo=lo, hi=hi, order=ordered, separators=seps, partitions=parts,
                       loss=loss)


def _width(j: int, piece: tuple[np.ndarray, int, bool], rank: np.ndarray | None, lev: list[int], code: list[int],
           leaves: list[list[np.ndarray]], cards: list[list[int]], n_rank: list[int]) -> float:
    """Share of column j's domain a piece of a split stands for (unweighted)."""
    rows, new_code, same = piece
    if rank is not None:
        r = rank[rows]
        return float(r.max() - r.min()) / max(n_rank[j] - 1, 1)
    lv, cd = (lev[j], code[j]) if same else (lev[j] - 1, new_code)
    return float(leaves[j][lv][cd] - 1) / max(cards[j][0] - 1, 1)


def _inverse(order: np.ndarray) -> np.ndarray:
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = np.arange(len(order))
    return inv


def _try_split(prob: Problem, rows: np.ndarray, w: np.ndarray, j: int, rank: np.ndarray | None, lev: list[int],
               maps: list[np.ndarray], cards: list[list[int]]) -> tuple[int, list[tuple[np.ndarray, int, bool]]] | None:
    """The pieces of a valid split of the partition on column j: (rows, code one level down, stays at the
    parent value), or None."""
    t = prob.bottom
    if rank is not None:
        r = rank[rows]
        o = np.argsort(r, kind="stable")
        cum = np.cumsum(w[o])
        med = int(r[o][np.searchsorted(cum, cum[-1] / 2.0)])
        left = r < med
        if not left.any():
            left = r <= med
        if left.all():
            return None
        cid = (~left).astype(np.int64)
        if _fails(prob, rows, cid, 2).any():
            return None
        return j, [(rows[left], 0, False), (rows[~left], 0, False)]
    child = maps[j][lev[j] - 1][t.qi[j][rows]]
    counts = np.bincount(child, weights=w, minlength=cards[j][lev[j] - 1])
    if not (counts >= prob.k).any():
        return None
    uniq = np.flatnonzero(counts)
    lut = np.empty(len(counts), dtype=np.int64)
    lut[uniq] = np.arange(len(uniq))
    cid = lut[child]
    keep = _split(prob, rows, cid, len(uniq), counts[uniq])
    if keep is None:
        return None
    pieces = [(rows[cid == c], int(uniq[c]), False) for c in np.flatnonzero(keep)]
    rest = ~keep[cid]
    if rest.any():
        pieces.append((rows[rest], -1, True))
    return j, pieces


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
        while _fails(prob, rows[rest], np.zeros(int(rest.sum()), dtype=np.int64), 1)[0]:
            if not order:
                return None
            c = order.pop(0)
            keep[c] = False
            rest |= cid == c
        if not keep.any():
            return None
    return keep


def _loss(prob: Problem, levels: np.ndarray, lo: np.ndarray, hi: np.ndarray, ordered: list[np.ndarray | None],
          cost: np.ndarray) -> float:
    """Weighted mean share of each column's domain the published values stand for (level / height for
    hierarchy nodes, interval width in ranks for ordered columns)."""
    w = prob.bottom.w
    n = float(w.sum())
    if not n:
        return 0.0
    tot = 0.0
    for j, q in enumerate(prob.qis):
        if ordered[j] is None:
            share = levels[:, j] / max(q.height, 1)
        else:
            share = (hi[:, j] - lo[:, j]) / max(len(ordered[j]) - 1, 1)  # type: ignore[arg-type]
        tot += prob.weights[j] * float((w * share).sum())
    return tot / (n * float(prob.weights.sum()))
