"""Privacy models on weighted equivalence-class tables: k-anonymity, l-diversity (distinct, entropy,
recursive (c,l)) and t-closeness (equal and ordered distance), all vectorized per class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import model_validator

from release.policy.base import StrictModel


class SensitiveSpec(StrictModel):
    """Attribute-disclosure protection for one sensitive column."""

    l: float | None = None  # noqa: E741
    "Every class must hold at least l 'well-represented' values: a class of identical values discloses them."
    model: Literal["distinct", "entropy", "recursive"] = "distinct"
    "How l is measured: distinct values, exp(entropy), or recursive (c,l) (the most frequent value is rare enough)."
    c: float | None = None
    "Recursive (c,l): the most frequent value must be below c times the sum of the l-th and rarer counts."
    t: float | None = None
    "t-closeness: each class's distribution of this column within t (Earth Mover's Distance) of the whole file's."
    distance: Literal["equal", "ordered"] = "equal"
    "EMD ground distance: equal (categories) or ordered (numbers, ordered categories)."
    order: tuple[str, ...] | None = None
    "Value order for the ordered distance (default: numeric, else lexicographic)."

    @model_validator(mode="after")
    def _check(self) -> SensitiveSpec:
        if self.l is None and self.t is None:
            raise ValueError("give l, t or both")
        if self.l is not None and self.l < 1:
            raise ValueError("l must be at least 1")
        if self.model == "recursive" and (self.c is None or self.c <= 0 or self.l is None or self.l < 2):
            raise ValueError("recursive (c,l)-diversity needs c > 0 and l >= 2")
        if self.t is not None and not 0 <= self.t <= 1:
            raise ValueError("t must be between 0 and 1")
        return self


@dataclass
class SensitiveColumn:
    """A sensitive column encoded as codes 0..card-1 in its declared order, with its global distribution."""

    name: str
    codes: np.ndarray
    card: int
    spec: SensitiveSpec
    global_dist: np.ndarray


def group_pairs(class_id: np.ndarray, s: np.ndarray, w: np.ndarray, card: int) -> tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    """Sum weights per (class, value) pair: returns pair class, pair value, pair weight."""
    from release.anonymize.lattice import factorize_keys

    key = class_id.astype(np.int64) * card + s
    span = (int(class_id.max()) + 1) * card if len(key) else 0
    inv, nu = factorize_keys(key, span)
    pw = np.bincount(inv, weights=w, minlength=nu)
    uk = np.zeros(nu, dtype=np.int64)
    uk[inv] = key
    return uk // card, uk % card, pw


def distinct_l(pc: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(pc, minlength=n_classes).astype(float)


def entropy_l(pc: np.ndarray, pw: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    p = pw / sizes[pc]
    h = -np.bincount(pc, weights=p * np.log(p), minlength=len(sizes))
    return np.exp(h)


def recursive_cl(pc: np.ndarray, pw: np.ndarray, n_classes: int, l: float, c: float) -> np.ndarray:  # noqa: E741
    """True per class when r1 < c * (r_l + r_{l+1} + ...), counts sorted in descending order."""
    order = np.lexsort((-pw, pc))
    pc_s, pw_s = pc[order], pw[order]
    starts = np.searchsorted(pc_s, np.arange(n_classes))
    rank = np.arange(len(pc_s)) - starts[pc_s]
    li = int(np.ceil(l))
    tail = np.bincount(pc_s, weights=np.where(rank >= li - 1, pw_s, 0.0), minlength=n_classes)
    r1 = np.zeros(n_classes)
    first = rank == 0
    r1[pc_s[first]] = pw_s[first]
    return r1 < c * tail


def t_distance(pc: np.ndarray, ps: np.ndarray, pw: np.ndarray, sizes: np.ndarray, col: SensitiveColumn) -> np.ndarray:
    """Earth Mover's Distance of each class's distribution to the global one."""
    n_classes = len(sizes)
    q = col.global_dist
    if col.spec.distance == "equal":
        diff = np.abs(pw / sizes[pc] - q[ps])
        present_q = np.bincount(pc, weights=q[ps], minlength=n_classes)
        return 0.5 * (np.bincount(pc, weights=diff, minlength=n_classes) + (1.0 - present_q))
    m = col.card
    dense = np.zeros((n_classes, m))
    np.add.at(dense, (pc, ps), pw)
    dense /= sizes[:, None]
    cum = np.cumsum(dense - q[None, :], axis=1)
    return np.abs(cum[:, :-1]).sum(axis=1) / max(m - 1, 1)


@dataclass
class ClassVerdict:
    """Per class: fails any model, fails a model that is monotone under suppression; per-column l and t."""

    fail: np.ndarray
    mono_fail: np.ndarray
    l_values: dict[str, dict[str, np.ndarray]]
    t_values: dict[str, np.ndarray]


def judge_classes(class_id: np.ndarray, n_classes: int, w: np.ndarray, sizes: np.ndarray, k: int,
                  sensitive: list[SensitiveColumn], sens_rows: list[np.ndarray],
                  k_sizes: np.ndarray | None = None) -> ClassVerdict:
    """Apply every model to the classes of a weighted table (rows -> class_id, weights w).

    `sens_rows[i]` holds the codes of sensitive column i per row; `sizes` are exact class sizes; `k_sizes` (when missing values match anything) are the sizes
    k is tested against. k and distinct l-diversity stay satisfied when failing classes merge with
    others, so they are the "monotone" part used to tag nodes below a failing node.
    """
    ks = sizes if k_sizes is None else k_sizes
    fail = ks < k
    mono = fail.copy()
    lv: dict[str, dict[str, np.ndarray]] = {}
    tv: dict[str, np.ndarray] = {}
    for col, srows in zip(sensitive, sens_rows, strict=True):
        pc, ps, pw = group_pairs(class_id, srows, w, col.card)
        d = distinct_l(pc, n_classes)
        e = entropy_l(pc, pw, sizes)
        lv[col.name] = {"distinct": d, "entropy": e}
        sp = col.spec
        if sp.l is not None:
            if sp.model == "distinct":
                bad = d < sp.l
                mono |= bad
            elif sp.model == "entropy":
                bad = e < sp.l * (1 - 1e-12)
                mono |= d < sp.l
            else:
                bad = ~recursive_cl(pc, pw, n_classes, sp.l, sp.c or 1.0)
                mono |= d < sp.l
            fail |= bad
        if sp.t is not None:
            t = t_distance(pc, ps, pw, sizes, col)
            tv[col.name] = t
            fail |= t > sp.t + 1e-12
    return ClassVerdict(fail=fail, mono_fail=mono, l_values=lv, t_values=tv)
