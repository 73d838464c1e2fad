"""Optimal full-domain generalization: a Flash/OLA-like lattice search over integer-coded hierarchies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from release.anonymize.fairness import GroupCap, caps_hold, group_shares
from release.anonymize.hierarchies import EncodedColumn
from release.anonymize.models import ClassVerdict, SensitiveColumn, group_pairs, judge_classes

Loss = Literal["precision", "discernibility", "entropy"]
_LIMIT = 1 << 62
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: odd multiplier, keep the high bits


def combine(cols: list[np.ndarray], cards: list[int]) -> np.ndarray:
    """One int64 key per row from several code columns (mixed radix, re-compressed before overflow)."""
    n = len(cols[0]) if cols else 0
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for c, card in zip(cols, cards, strict=True):
        card = max(int(card), 1)
        if radix * card >= _LIMIT:
            uniq, key = np.unique(key, return_inverse=True)
            key = key.astype(np.int64)
            radix = max(len(uniq), 1)
        key = key * card + c
        radix *= card
    return key


def radix(cards: list[int]) -> int:
    r = 1
    for c in cards:
        r *= max(int(c), 1)
    return r


def factorize_keys(key: np.ndarray, span: int) -> tuple[np.ndarray, int]:
    """Dense ids (in key order) for int64 keys below `span`: a bincount pass when the span is small,
    a sort otherwise."""
    if 0 < span <= 16 * len(key) + (1 << 17):
        present = np.zeros(span, dtype=bool)
        present[key] = True
        uniq = np.flatnonzero(present)
        lut = np.empty(span, dtype=np.int64)
        lut[uniq] = np.arange(len(uniq))
        return lut[key], len(uniq)
    # Hash factorization: ids need not follow key order, only be consistent.
    inv, uniq = pd.factorize(key)
    return np.asarray(inv, dtype=np.int64), len(uniq)


def first_rows(ids: np.ndarray, n_ids: int) -> np.ndarray:
    """Index of one row per id (any row will do: the rows of an id agree on what is kept)."""
    first = np.empty(n_ids, dtype=np.int64)
    first[ids] = np.arange(len(ids))
    return first


def classes_of(cols: list[np.ndarray], cards: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """class id per row and the index of one row per class (classes in key order)."""
    key = combine(cols, cards)
    span = radix(cards)
    ids, nc = factorize_keys(key, span if span < _LIMIT else 0)
    return ids, first_rows(ids, nc)


def compatible_sizes(cols: list[np.ndarray], cards: list[int], miss: list[int], w: np.ndarray) -> np.ndarray:
    """Per class row: total weight of rows that agree with it wherever neither is missing.

    This is sdcMicro's frequency for keys with missing values (a missing value matches anything);
    `miss[j]` is the code of 'missing' in column j, or -1 when missing values form their own category.
    """
    m = len(cols)
    n = len(w)
    mm = np.zeros((n, m), dtype=bool)
    for j, (c, mc) in enumerate(zip(cols, miss, strict=True)):
        if mc >= 0:
            mm[:, j] = c == mc
    bits = (mm * (1 << np.arange(m, dtype=np.int64))).sum(axis=1)
    pats = np.unique(bits)
    out = np.zeros(n)
    for p in pats:
        rp = np.flatnonzero(bits == p)
        for q in pats:
            rq = np.flatnonzero(bits == q)
            free = [j for j in range(m) if not (p >> j) & 1 and not (q >> j) & 1]
            both = np.concatenate([rp, rq])
            if free:
                key = combine([cols[j][both] for j in free], [cards[j] for j in free])
                _, inv = np.unique(key, return_inverse=True)
            else:
                inv = np.zeros(len(both), dtype=np.int64)
            sums = np.bincount(inv[len(rp):], weights=w[rq], minlength=int(inv.max()) + 1 if len(inv) else 0)
            out[rp] += sums[inv[:len(rp)]]
    return out


@dataclass
class Table:
    """Distinct (quasi-identifier codes at `node`, sensitive codes) rows with their record counts."""

    node: tuple[int, ...]
    qi: list[np.ndarray]
    sens: list[np.ndarray]
    w: np.ndarray
    row_class: np.ndarray | None = None
    "class (distinct quasi-identifier combination) of each row, when known"
    n_classes: int = 0

    @property
    def rows(self) -> int:
        return len(self.w)


@dataclass
class Evaluation:
    """A node's classes, which of them fail the models, and its information loss."""

    node: tuple[int, ...]
    ok: bool
    mono_ok: bool
    suppressed: float
    loss: float
    loss_nosupp: float
    table: Table
    row_class: np.ndarray
    fail: np.ndarray
    sizes: np.ndarray
    verdict: ClassVerdict
    caps_ok: bool = True
    "every capped group within its cap (already part of `ok`)"


@dataclass
class SearchResult:
    """The chosen node and how the search got there."""

    node: tuple[int, ...] | None
    evaluation: Evaluation | None
    evaluated: int
    lattice_size: int
    optimal: bool = True
    quick: int = 0
    "of the nodes evaluated, those refuted by the quick k test alone (no class table built)"
    trace: list[tuple[tuple[int, ...], bool, float]] = field(default_factory=list)


class Problem:
    """Quasi-identifiers, sensitive columns and the models, ready for node evaluations."""

    def __init__(self, qis: list[EncodedColumn], sensitive: list[SensitiveColumn], k: int,
                 max_suppression: float, loss: Loss = "precision", weights: list[float] | None = None,
                 passive: list[tuple[str, np.ndarray, int]] | None = None, cap: GroupCap | None = None,
                 capped: list[str] | None = None, counts: np.ndarray | None = None) -> None:
        """`passive` columns (name, codes, card) are carried through the tables without a model, so that
        groups of protected columns can be capped; `cap` caps the suppression of the groups of the
        `capped` columns (quasi-identifiers, by their level-0 values, or passive columns). `counts`: the
        records each input row stands for (rows of a frequency table); default one per row."""
        self.qis = qis
        self.sensitive = sensitive
        self.passive = list(passive or [])
        self.cap = cap
        self.n_sens = len(sensitive)
        self.k = k
        self.max_suppression = max_suppression
        self.loss_name = loss
        rows = len(qis[0].codes0) if qis else 0
        self.counts = np.ones(rows) if counts is None else np.asarray(counts, dtype=float)
        "records per input row (integers: every figure below is a sum of them, exact in floating point)"
        self.n = int(self.counts.sum()) if rows else 0
        self.heights = np.array([q.height for q in qis], dtype=np.int64)
        # Attribute weights (ARX's): how much losing detail in each column costs.
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(qis), dtype=float)
        self.any_missing = any(q.any_missing for q in qis)
        cols = [q.codes0.astype(np.int64) for q in qis] + [s.codes.astype(np.int64) for s in sensitive] + \
            [c.astype(np.int64) for _, c, _ in self.passive]
        self._sens_cards = [s.card for s in sensitive] + [max(int(card), 1) for _, _, card in self.passive]
        cards = [len(q.labels[0]) for q in qis] + self._sens_cards
        self.record_row: np.ndarray
        first: np.ndarray
        self.record_row, first = classes_of(cols, cards) if rows else (np.zeros(0, np.int64),
                                                                       np.zeros(0, np.int64))
        w = np.bincount(self.record_row, weights=self.counts, minlength=len(first)).astype(float)
        self.bottom = Table(node=tuple([0] * len(qis)), qi=[c[first] for c in cols[:len(qis)]],
                            sens=[c[first] for c in cols[len(qis):]], w=w)
        # Per column and level: record counts per generalized code (for non-uniform entropy).
        self._freq = [[np.bincount(q.maps[lv][q.codes0], weights=self.counts, minlength=len(q.labels[lv]))
                       .astype(float) for lv in range(q.height + 1)] for q in qis]
        self._entropy_total = np.array(
            [[float(np.sum(self.counts * np.log2(f[q.maps[lv][q.codes0]] / self._freq[j][0][q.codes0])))
              if self.n else 0.0
              for lv, f in enumerate(self._freq[j])] for j, q in enumerate(qis)], dtype=object)
        self._entropy_top = float(sum(w * t[-1] for w, t in zip(self.weights, self._entropy_total,
                                                                 strict=True))) or 1.0
        self._steps: dict[tuple[int, int, int], np.ndarray] = {}
        self._cache: dict[tuple[int, ...], Evaluation] = {}
        self._tables: dict[tuple[int, ...], Table] = {}
        self._tab_keys: list[tuple[int, ...]] = []
        self._tab_arr = np.zeros((4096, len(qis)), dtype=np.int64)
        self._tab_rows = np.zeros(4096, dtype=np.int64)
        self._fast_fail: set[tuple[int, ...]] = set()
        self.fast_bits: int | None = None
        "log2 of the quick test's hash table (None: sized to the data; tests shrink it to force collisions)"
        self._fast_groups: list[tuple[list[int], dict[tuple[int, ...], tuple[np.ndarray, int]]]] | None = None
        # Capped groups as codes per bottom row: a quasi-identifier's level-0 value or a passive column's.
        names = [q.name for q in qis]
        pnames = [p[0] for p in self.passive]
        self.cap_groups: list[tuple[str, np.ndarray, int]] = []
        for c in (capped or []) if cap is not None else []:
            if c in names:
                j = names.index(c)
                self.cap_groups.append((c, self.bottom.qi[j], len(qis[j].labels[0])))
            elif c in pnames:
                i = pnames.index(c)
                self.cap_groups.append((c, self.bottom.sens[self.n_sens + i], self._sens_cards[self.n_sens + i]))
            else:
                raise ValueError(f"capped column {c!r} is neither a quasi-identifier nor a passive column")

    # --- encoding helpers -------------------------------------------------------------------------

    def _step(self, j: int, a: int, b: int) -> np.ndarray:
        key = (j, a, b)
        if key not in self._steps:
            self._steps[key] = self.qis[j].step_map(a, b)
        return self._steps[key]

    def static_bound(self, nodes: np.ndarray) -> np.ndarray:
        """Information loss of each node with no suppression: a lower bound, monotone in the lattice."""
        wsum = float(self.weights.sum()) or 1.0
        if self.loss_name == "precision":
            return (nodes / np.maximum(self.heights, 1) * self.weights).sum(axis=1) / wsum
        if self.loss_name == "entropy":
            tot = np.zeros(len(nodes))
            for j in range(len(self.qis)):
                tot += self.weights[j] * np.asarray(self._entropy_total[j], dtype=float)[nodes[:, j]]
            return tot / self._entropy_top
        return np.zeros(len(nodes))

    def _source(self, node: tuple[int, ...]) -> Table:
        """The cached table below `node` with the fewest rows (roll-up instead of re-reading records)."""
        if not self._tables:
            return self.bottom
        best: Table | None = None
        for j, lv in enumerate(node):
            if lv:
                t = self._tables.get(node[:j] + (lv - 1,) + node[j + 1:])
                if t is not None and (best is None or t.rows < best.rows):
                    best = t
        if best is not None:
            return best
        m = len(self._tab_keys)
        below = np.all(self._tab_arr[:m] <= np.asarray(node, dtype=np.int64), axis=1)
        if not below.any():
            return self.bottom
        i = int(np.argmin(np.where(below, self._tab_rows[:m], np.iinfo(np.int64).max)))
        return self._tables[self._tab_keys[i]]

    def rollup(self, node: tuple[int, ...], src: Table | None = None) -> tuple[Table, np.ndarray]:
        """The table at `node` and, per row of the source table, its row in the new table."""
        src = src or self._source(node)
        qi = [c if a == b else self._step(j, a, b)[c]
              for j, (c, a, b) in enumerate(zip(src.qi, src.node, node, strict=True))]
        qcards = [len(q.labels[b]) for q, b in zip(self.qis, node, strict=True)]
        span_q = radix(qcards)
        cls, nc = factorize_keys(combine(qi, qcards), span_q if span_q < _LIMIT else 0)
        if src.sens:
            scards = self._sens_cards
            skey = combine(src.sens, scards)
            span = radix(scards)
            if span >= _LIMIT // max(nc, 1):
                skey, span = factorize_keys(skey, 0)
            inv, nrows = factorize_keys(cls * span + skey, nc * span)
        else:
            inv, nrows = cls, nc
        first = first_rows(inv, nrows)
        w = np.bincount(inv, weights=src.w, minlength=nrows)
        return Table(node=node, qi=[c[first] for c in qi], sens=[s[first] for s in src.sens], w=w,
                     row_class=cls[first], n_classes=nc), inv

    # --- quick k test ------------------------------------------------------------------------------

    def _fast_setup(self) -> None:
        """Per pair of columns and pair of levels, the pair's code on each bottom row, so a node's class
        key is a few multiply-adds with no lookups."""
        t = self.bottom
        self._fast_groups = []
        m = len(self.qis)
        j = 0
        while j < m:
            pair = j + 1 < m and (self.heights[j] + 1) * (self.heights[j + 1] + 1) * t.rows <= 1 << 24
            g = [j, j + 1] if pair else [j]
            per_col = [[(self.qis[c].maps[a][t.qi[c]].astype(np.uint64), len(self.qis[c].labels[a]))
                        for a in range(self.qis[c].height + 1)] for c in g]
            tab: dict[tuple[int, ...], tuple[np.ndarray, int]] = {}
            if pair:
                for a, (ca, na) in enumerate(per_col[0]):
                    for b, (cb, nb) in enumerate(per_col[1]):
                        tab[(a, b)] = (ca * np.uint64(nb) + cb, na * nb)
            else:
                for a, (ca, na) in enumerate(per_col[0]):
                    tab[(a,)] = (ca, na)
            self._fast_groups.append((g, tab))
            j += len(g)

    def _fast_fails(self, node: tuple[int, ...]) -> bool:
        """True when `node` surely fails k under the suppression limit (so it fails the monotone models).

        Keys wider than a small table are hashed into it; a collision merges classes, which can only
        hide small classes, so the suppressed share found is a lower bound and 'fails' is never wrong.
        """
        if self.any_missing or not self.qis or self.n == 0:
            return False
        if self._fast_groups is None:
            self._fast_setup()
        assert self._fast_groups is not None
        key: np.ndarray | None = None
        span = 1
        for i, (g, tab) in enumerate(self._fast_groups):
            codes, card = tab[tuple(node[j] for j in g)]
            if key is None:
                key = codes
            elif i == 1:
                key = key * np.uint64(card) + codes  # a new array: the first group's codes stay intact
            else:
                key *= np.uint64(card)
                key += codes
            span *= card
        assert key is not None
        t = self.bottom
        bits = self.fast_bits or max((4 * t.rows).bit_length(), 10)
        if span <= 1 << (bits + 1):
            bucket, nb = key.view(np.int64), span
        else:
            h = key * _GOLDEN
            h >>= np.uint64(64 - bits)
            bucket, nb = h.view(np.int64), 1 << bits
        sizes = np.bincount(bucket, weights=t.w, minlength=nb)
        small = float(t.w[sizes[bucket] < self.k].sum())  # not np.dot: BLAS threads fight the other cores
        return small / self.n > self.max_suppression + 1e-12

    def _mono_fails(self, node: tuple[int, ...]) -> bool:
        """Whether `node` fails the monotone models, by the quick test when it settles it."""
        ev = self._cache.get(node)
        if ev is not None:
            return not ev.mono_ok
        if node in self._fast_fail:
            return True
        if self._fast_fails(node):
            self._fast_fail.add(node)
            return True
        return not self.evaluate(node).mono_ok

    def _checked(self) -> int:
        return len(self._cache) + len(self._fast_fail)

    # --- evaluation -------------------------------------------------------------------------------

    def evaluate(self, node: tuple[int, ...], keep_table: bool = True) -> Evaluation:
        if node in self._cache:
            return self._cache[node]
        # Group caps need each bottom row's class, so capped problems roll up from the bottom table.
        table, inv = self.rollup(node, self.bottom if self.cap_groups else None)
        ev = self._judge(node, table, inv if self.cap_groups else None)
        self._cache[node] = ev
        if keep_table and len(self._tab_keys) < 4096:
            i = len(self._tab_keys)
            self._tables[node] = table
            self._tab_keys.append(node)
            self._tab_arr[i] = node
            self._tab_rows[i] = table.rows
        return ev

    def _judge(self, node: tuple[int, ...], table: Table, inv: np.ndarray | None = None) -> Evaluation:
        """Judge the classes of `table` at `node`; with group caps, `inv` maps bottom rows to its rows
        (computed here when not given)."""
        if self.cap_groups and inv is None:
            table, inv = self.rollup(node, self.bottom)
        qcards = [len(q.labels[b]) for q, b in zip(self.qis, node, strict=True)]
        if table.row_class is not None:
            row_class, nc = table.row_class, table.n_classes
            first = first_rows(row_class, nc)
        else:
            row_class, first = classes_of(table.qi, qcards)
            nc = len(first)
        sizes = np.bincount(row_class, weights=table.w, minlength=nc)
        if self.any_missing:
            verdict, fail = self._judge_any(node, table, row_class, first, sizes, qcards)
        else:
            verdict = judge_classes(row_class, nc, table.w, sizes, self.k, self.sensitive, table.sens[:self.n_sens])
            fail = verdict.fail
        n = max(self.n, 1)
        supp = float(sizes[fail].sum()) / n
        mono_supp = float(sizes[verdict.mono_fail].sum()) / n
        ok = supp <= self.max_suppression + 1e-12
        mono_ok = mono_supp <= self.max_suppression + 1e-12
        caps_ok = True
        if self.cap_groups and inv is not None:
            caps_ok, mono_caps = self._caps(row_class[inv], fail, verdict.mono_fail, supp)
            ok = ok and caps_ok
            mono_ok = mono_ok and mono_caps
        nosupp = float(self.static_bound(np.asarray([node]))[0]) if self.loss_name != "discernibility" else \
            float((sizes ** 2).sum()) / n ** 2
        loss = self._loss(node, table, row_class, sizes, fail, nosupp)
        return Evaluation(node=node, ok=ok, mono_ok=mono_ok, suppressed=supp, loss=loss, loss_nosupp=nosupp,
                          table=table, row_class=row_class, fail=fail, sizes=sizes, verdict=verdict, caps_ok=caps_ok)

    def _caps(self, bottom_class: np.ndarray, fail: np.ndarray, mono_fail: np.ndarray,
              overall: float) -> tuple[bool, bool]:
        """(every capped group within its cap, every group within the share cap on the monotone
        suppression). The second is down-closed in the lattice, so a node failing it tags its down-set."""
        assert self.cap is not None
        w = self.bottom.w
        f_rows, m_rows = fail[bottom_class], mono_fail[bottom_class]
        ok = mono = True
        for _, codes, card in self.cap_groups:
            tot, share = group_shares(codes, card, w, f_rows)
            ok &= caps_hold(self.cap, tot, share, overall)
            if self.cap.share is not None:
                _, mshare = group_shares(codes, card, w, m_rows)
                mono &= caps_hold(self.cap, tot, mshare, overall, monotone_only=True)
        return ok, mono

    def _judge_any(self, node: tuple[int, ...], table: Table, row_class: np.ndarray, first: np.ndarray,
                   sizes: np.ndarray, qcards: list[int]) -> tuple[ClassVerdict, np.ndarray]:
        """Missing values match anything: k is tested on compatible counts, iterated until stable,
        because suppressing a class lowers the compatible counts of the classes it matched."""
        cq = [c[first] for c in table.qi]
        miss = [q.missing[b] if q.any_missing else -1 for q, b in zip(self.qis, node, strict=True)]
        nc = len(first)
        verdict = judge_classes(row_class, nc, table.w, sizes, self.k, self.sensitive, table.sens[:self.n_sens],
                                k_sizes=np.full(nc, np.inf))
        fail = verdict.fail.copy()
        while True:
            alive = np.where(fail, 0.0, sizes)
            compat = compatible_sizes(cq, qcards, miss, alive)
            new = fail | (compat < self.k)
            if (new == fail).all():
                break
            fail = new
        verdict.fail = fail
        verdict.mono_fail = verdict.mono_fail | fail
        verdict.k_sizes = np.where(fail, 0.0, compat)  # type: ignore[attr-defined]
        return verdict, fail

    def _loss(self, node: tuple[int, ...], table: Table, row_class: np.ndarray, sizes: np.ndarray,
              fail: np.ndarray, nosupp: float) -> float:
        n = max(self.n, 1)
        n_supp = float(sizes[fail].sum())
        if self.loss_name == "precision":
            return nosupp * (1 - n_supp / n) + n_supp / n
        if self.loss_name == "discernibility":
            kept = sizes[~fail]
            return float((kept ** 2).sum() + n_supp * n) / n ** 2
        # Suppressed records cost what the '*' level costs: log2(n / f_L(value)) more per column.
        rows_failed = fail[row_class]
        extra = 0.0
        for j, (c, lv) in enumerate(zip(table.qi, node, strict=True)):
            f = self._freq[j][lv][c[rows_failed]]
            extra += self.weights[j] * float((table.w[rows_failed] * np.log2(n / f)).sum())
        return nosupp + extra / self._entropy_top

    # --- search -----------------------------------------------------------------------------------

    def search(self) -> SearchResult:
        """The satisfying node of least loss (ties: lower height, then lexicographically smaller).

        With an incumbent (and a loss whose static bound is not trivial), only the nodes whose bound
        is within the incumbent's loss are visited, highest first, so that the failing nodes met are
        the maximal ones and each tags its whole down-set; failures are mostly settled by the quick
        hashed k test. Otherwise nodes are visited in order of their no-suppression loss, a lower
        bound of their loss, so the walk stops once that bound exceeds the best loss found.
        Predictive tagging skips the rest:
        a node below a node failing k / distinct-l (monotone under suppression) fails too; a node
        above a node satisfying every model with no suppression cannot have less loss. When a node
        fails, a binary search up a chain of its generalizations finds a high failing node to tag
        from (Flash's idea), so whole down-sets are skipped without evaluation.
        """
        grids = np.meshgrid(*[np.arange(h + 1) for h in self.heights], indexing="ij")
        nodes = np.stack([g.ravel() for g in grids], axis=1).astype(np.int16)
        size = len(nodes)
        lb = self.static_bound(nodes.astype(np.int64))
        height = nodes.sum(axis=1)
        order = np.lexsort(tuple(nodes[:, j] for j in range(nodes.shape[1] - 1, -1, -1)) + (height, lb))
        dead = self._projection_bound(nodes) > self.max_suppression + 1e-12
        fails: list[np.ndarray] = []
        best: Evaluation | None = None
        best_key: tuple[float, int, tuple[int, ...]] | None = None
        evaluated_before = self._checked()
        quick_before = len(self._fast_fail)
        inc = self._incumbent()
        if inc is not None:
            best, best_key = inc, (round(inc.loss, 12), int(sum(inc.node)), inc.node)
        top_down = best_key is not None and self.loss_name != "discernibility"
        if top_down:
            # With an incumbent, only nodes whose bound is within its loss can win. Visiting them from
            # the top of that region down makes the first failing nodes met the highest ones, so each
            # tags the largest down-set: about one evaluation per maximal failing node.
            assert best_key is not None
            region = np.flatnonzero((lb <= best_key[0] + 1e-12) & ~dead)
            nodes, lb, height, dead = nodes[region], lb[region], height[region], dead[region]
            order = np.lexsort(tuple(nodes[:, j] for j in range(nodes.shape[1] - 1, -1, -1)) + (lb, -height))
        # Column-wise copies: tagging a down-set or up-set is a few comparisons of contiguous arrays.
        cols = [np.ascontiguousarray(nodes[:, j]) for j in range(nodes.shape[1])]

        def down_set(top: tuple[int, ...]) -> np.ndarray:
            m = np.ones(len(nodes), dtype=bool)
            for c, v in zip(cols, top, strict=True):
                m &= c <= v
            return m

        def up_set(low: tuple[int, ...]) -> np.ndarray:
            m = np.ones(len(nodes), dtype=bool)
            for c, v in zip(cols, low, strict=True):
                m &= c >= v
            return m
        dyn_nodes: list[tuple[int, ...]] = []
        dyn_vals: list[float] = []
        for idx in order:
            if dead[idx]:
                continue
            if best_key is not None and lb[idx] > best_key[0] + 1e-12:
                if top_down:
                    continue
                break
            node = tuple(int(x) for x in nodes[idx])
            if best_key is not None and self.loss_name == "discernibility" and dyn_nodes:
                arr = np.asarray(dyn_nodes)
                below = np.all(arr <= np.asarray(node), axis=1)
                if below.any() and max(np.asarray(dyn_vals)[below]) > best_key[0] + 1e-12:
                    continue
            if self._mono_fails(node):
                top = node if top_down else self._climb_failing(node, best_key[0] if best_key else None)
                fails.append(np.asarray(top))
                dead |= down_set(top)
                continue
            ev = self.evaluate(node)
            dyn_nodes.append(node)
            dyn_vals.append(ev.loss_nosupp)
            if ev.ok:
                key = (round(ev.loss, 12), int(sum(node)), node)
                if best_key is None or key < best_key:
                    best, best_key = ev, key
                if ev.suppressed == 0:
                    dead |= up_set(node)
        return SearchResult(node=best.node if best else None, evaluation=best,
                            evaluated=self._checked() - evaluated_before, lattice_size=size,
                            quick=len(self._fast_fail) - quick_before)

    def _contributions(self) -> list[list[float]]:
        """Per column and level, its share of the no-suppression loss (the bound is a sum of these)."""
        if not hasattr(self, "_contrib"):
            m = len(self.qis)
            self._contrib = []
            for j, q in enumerate(self.qis):
                rows = np.zeros((q.height + 1, m), dtype=np.int64)
                rows[:, j] = np.arange(q.height + 1)
                self._contrib.append([float(x) for x in self.static_bound(rows)])
        return self._contrib

    def _projection_bound(self, nodes: np.ndarray) -> np.ndarray:
        """Per node, a lower bound on the share suppressed by k / distinct-l, from one- and two-column
        projections: a record whose projected class is too small (or too uniform) fails at every node
        with those levels, because its class there is a subset of the projected one."""
        bound = np.zeros(len(nodes))
        if self.any_missing or not self.qis or self.n == 0:
            return bound
        m = len(self.qis)
        distinct = [(s, i) for i, s in enumerate(self.sensitive) if s.spec.l is not None]
        t = self.bottom

        def failing(cols: list[np.ndarray], cards: list[int]) -> float:
            cls, first = classes_of(cols, cards)
            sizes = np.bincount(cls, weights=t.w, minlength=len(first))
            bad = sizes < self.k
            for s, i in distinct:
                pc, _, _ = group_pairs(cls, t.sens[i], t.w, s.card)
                bad |= np.bincount(pc, minlength=len(first)) < float(s.spec.l or 0)
            return float(sizes[bad].sum()) / self.n

        lv0 = [[q.maps[a][t.qi[j]] for a in range(q.height + 1)] for j, q in enumerate(self.qis)]
        cards = [[len(lab) for lab in q.labels] for q in self.qis]
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)] if m <= 12 else []
        for i in range(m):
            tab = np.array([failing([lv0[i][a]], [cards[i][a]]) for a in range(self.qis[i].height + 1)])
            bound = np.maximum(bound, tab[nodes[:, i]])
        for i, j in pairs:
            tab = np.zeros((self.qis[i].height + 1, self.qis[j].height + 1))
            for a in range(self.qis[i].height + 1):
                for b in range(self.qis[j].height + 1):
                    # Above a level where the pair already passes, coarser levels pass too.
                    if (a and tab[a - 1, b] == 0) or (b and tab[a, b - 1] == 0):
                        continue
                    tab[a, b] = failing([lv0[i][a], lv0[j][b]], [cards[i][a], cards[j][b]])
            bound = np.maximum(bound, tab[nodes[:, i], nodes[:, j]])
        return bound

    def _chain(self, node: tuple[int, ...], limit: float | None) -> list[tuple[int, ...]]:
        """Greedy chain of generalizations from `node` (cheapest step first), while the bound stays <= limit."""
        chain = [node]
        cur = list(node)
        contrib = self._contributions()
        lb = float(self.static_bound(np.asarray([node]))[0])
        while True:
            cand = [(contrib[j][cur[j] + 1] - contrib[j][cur[j]], j) for j in range(len(cur))
                    if cur[j] < self.heights[j]]
            if not cand:
                break
            step, j = min(cand)
            if limit is not None and lb + step > limit + 1e-12:
                break
            lb += step
            cur[j] += 1
            chain.append(tuple(cur))
        return chain

    def _incumbent(self) -> Evaluation | None:
        """A satisfying node found cheaply (binary search up one chain from the bottom): its loss bounds
        the walk from the start."""
        chain = self._chain(tuple([0] * len(self.qis)), None)
        if self._mono_fails(chain[-1]) or not self.evaluate(chain[-1]).ok:
            return None
        lo, hi = -1, len(chain) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if not self._mono_fails(chain[mid]) and self.evaluate(chain[mid]).ok:
                hi = mid
            else:
                lo = mid
        best = self.evaluate(chain[hi])
        # Greedy descent: lower one column at a time while the node still satisfies and loses less.
        improved = True
        while improved:
            improved = False
            for j in range(len(best.node)):
                if best.node[j] == 0:
                    continue
                lower = best.node[:j] + (best.node[j] - 1,) + best.node[j + 1:]
                if self._mono_fails(lower):
                    continue
                cand = self.evaluate(lower)
                if cand.ok and cand.loss < best.loss:
                    best, improved = cand, True
        return best

    def _climb_failing(self, node: tuple[int, ...], limit: float | None = None) -> tuple[int, ...]:
        """A high node above `node` that still fails the monotone models, found by binary search up a
        greedy chain, then raising each dimension while the node keeps failing. Only nodes whose bound
        is within `limit` (the best loss so far) are tried: failing nodes there are the ones to tag."""
        chain = self._chain(node, limit)
        lo, hi = 0, len(chain) - 1
        if self._mono_fails(chain[hi]):
            top = list(chain[hi])
        else:
            # Invariant: chain[lo] fails, chain[hi] passes the monotone models.
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if not self._mono_fails(chain[mid]):
                    hi = mid
                else:
                    lo = mid
            top = list(chain[lo])
        contrib = self._contributions()
        lb = float(self.static_bound(np.asarray([top]))[0])
        for j in range(len(top)):
            while top[j] < self.heights[j]:
                step = contrib[j][top[j] + 1] - contrib[j][top[j]]
                if limit is not None and lb + step > limit + 1e-12:
                    break
                c2 = list(top)
                c2[j] += 1
                if not self._mono_fails(tuple(c2)):
                    break
                top = c2
                lb += step
        return tuple(top)

    def brute_force(self) -> tuple[tuple[int, ...] | None, float | None]:
        """Evaluate every node (tests only: the reference the search must match)."""
        grids = np.meshgrid(*[np.arange(h + 1) for h in self.heights], indexing="ij")
        nodes = np.stack([g.ravel() for g in grids], axis=1)
        best_key = None
        for row in nodes:
            node = tuple(int(x) for x in row)
            table, inv = self.rollup(node, self.bottom)
            ev = self._judge(node, table, inv)
            if ev.ok:
                key = (round(ev.loss, 12), int(sum(node)), node)
                if best_key is None or key < best_key:
                    best_key = key
        return (best_key[2], best_key[0]) if best_key else (None, None)
