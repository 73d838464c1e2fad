"""Joint k-anonymity across versions: records joined to an earlier release are combined at their finer values.

A record published in two releases (linked by a record-level identifier both publish: a keyed
pseudonym, a record id, any identifier-like column unique in both files) is known to the attacker
at the intersection of its two published values: the finer of two hierarchy nodes, or the
intersection of two intervals. The combined classes (records with identical combined values, over
the k step's quasi-identifiers both releases publish) must still meet k and the l-diversity of the
step's sensitive columns. What happens when they do not is the policy's `series.joint`:

- `block`: the release is blocked (nothing published);
- `keep-earlier`: every joined record is published with the earlier release's values (full-domain);
- `refine`: only the records of failing combined classes go back to their earlier values (local).

Either way the result is checked again, on the published file, by the run and by `release check`.

Values are turned into regions per distinct label (a loop over distinct labels, never records):
an interval of numbers or instants, a set of hierarchy leaves, a masked prefix, or everything ('*').
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from release.anonymize.hierarchies import STAR, Hierarchy

ALL: tuple[Any, ...] = ("all",)
_NUM = r"-?\d+(?:\.\d+)?"
_RANGE = re.compile(rf"^({_NUM})-({_NUM})$")
_BELOW = re.compile(rf"^<({_NUM})$")
_ABOVE = re.compile(rf"^({_NUM})\+$")
_EXACT = re.compile(rf"^{_NUM}$")


# ------------------------------------------------------------------------------------------ regions


def _time_span(label: str, units: tuple[str, ...]) -> tuple[float, float] | None:
    """[start, end) in epoch seconds of a truncated time label (hour, day, week, month, quarter, year)."""
    try:
        if re.fullmatch(r"\d{4}", label):
            a = datetime(int(label), 1, 1)
            return a.timestamp(), datetime(a.year + 1, 1, 1).timestamp()
        m = re.fullmatch(r"(\d{4})-Q([1-4])", label)
        if m:
            y, q = int(m.group(1)), int(m.group(2))
            a = datetime(y, 3 * q - 2, 1)
            b = datetime(y + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
            return a.timestamp(), b.timestamp()
        m = re.fullmatch(r"(\d{4})-(\d{2})", label)
        if m:
            y, mo = int(m.group(1)), int(m.group(2))
            return datetime(y, mo, 1).timestamp(), datetime(y + (mo == 12), 1 if mo == 12 else mo + 1, 1).timestamp()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", label):
            a = datetime.fromisoformat(label)
            # A day label of a hierarchy whose only day-like unit is the week is a Monday standing for 7 days.
            days = 7 if "week" in units and "day" not in units else 1
            return a.timestamp(), (a + timedelta(days=days)).timestamp()
        a = datetime.fromisoformat(label)
        step = timedelta(hours=1) if re.fullmatch(r".*T\d{2}:00", label) else timedelta(seconds=1)
        return a.timestamp(), (a + step).timestamp()
    except ValueError:
        return None


def _leaves(tree: list[dict[str, str]]) -> dict[str, frozenset[str]]:
    """Every node of a category tree -> the level-0 values under it."""
    if not tree:
        return {}
    out: dict[str, set[str]] = {}
    for leaf in tree[0]:
        node = leaf
        out.setdefault(node, set()).add(leaf)
        for level in tree:
            node = level.get(node, node)
            out.setdefault(node, set()).add(leaf)
    return {k: frozenset(v) for k, v in out.items()}


@dataclass
class Regions:
    """How one quasi-identifier's published labels map to regions of its domain."""

    hierarchy: Hierarchy | None
    tree: list[dict[str, str]] = field(default_factory=list)
    leaves: dict[str, frozenset[str]] = field(default_factory=dict)

    def region(self, label: Any) -> tuple[Any, ...]:
        if label is None or (isinstance(label, float) and math.isnan(label)):
            return ("missing",)
        s = str(label)
        if s == STAR:
            return ALL
        h = self.hierarchy
        if h is not None and h.time is not None:
            if "/" in s:  # local recoding: an ISO interval of two finest-unit labels
                a, b = s.split("/", 1)
                sa, sb = _time_span(a, h.time), _time_span(b, h.time)
                if sa and sb:
                    return ("iv", sa[0], sb[1])
            span = _time_span(s, h.time)
            if span:
                return ("iv", *span)
            return ("str", s)
        if h is not None and (h.widths is not None or h.age):
            return self._number(s)
        if s in self.leaves:
            return ("set", self.leaves[s])
        if STAR in s:
            return ("mask", s)
        return ("str", s)

    @staticmethod
    def _number(s: str) -> tuple[Any, ...]:
        if _EXACT.match(s):
            v = float(s)
            return ("iv", v, v)
        m = _RANGE.match(s)
        if m:
            return ("iv", float(m.group(1)), float(m.group(2)))
        m = _BELOW.match(s)
        if m:
            return ("iv", -math.inf, math.nextafter(float(m.group(1)), -math.inf))
        m = _ABOVE.match(s)
        if m:
            return ("iv", float(m.group(1)), math.inf)
        return ("str", s)


def intersect(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    """What an attacker knows of a value published as both a and b (a record's two versions)."""
    if a == ALL:
        return b
    if b == ALL or a == b:
        return a
    if a[0] == "iv" and b[0] == "iv":
        return ("iv", max(a[1], b[1]), min(a[2], b[2]))
    if a[0] == "set" and b[0] == "set":
        return ("set", a[1] & b[1])
    if a[0] == "set" and b[0] == "str":
        return b if b[1] in a[1] else ("empty",)
    if b[0] == "set" and a[0] == "str":
        return a if a[1] in b[1] else ("empty",)
    if a[0] == "mask" and b[0] in ("mask", "str") and len(a[1]) == len(b[1]):
        merged = "".join(y if x == STAR else x for x, y in zip(a[1], b[1], strict=True))
        return ("str", merged) if STAR not in merged else ("mask", merged)
    if b[0] == "mask":
        return intersect(b, a)
    # Values that do not nest (another hierarchy in the other release): the pair itself is what is known.
    return ("pair", a, b)


def canonical(r: tuple[Any, ...]) -> str:
    """A text key of a region (frozensets sorted) for grouping."""
    if r[0] == "set":
        return "set:" + "|".join(sorted(r[1]))
    if r[0] == "pair":
        return f"pair:{canonical(r[1])}&{canonical(r[2])}"
    return ":".join(map(str, r))


# --------------------------------------------------------------------------------------- the joint


@dataclass
class JointResult:
    """Combined classes of one records output against its predecessors."""

    case: str
    "'no predecessor' | 'not joinable' | 'joined'"
    quasi_identifiers: list[str]
    joined: int = 0
    "records of this release joined to at least one earlier release"
    link: list[str] = field(default_factory=list)
    "join columns used, as 'dataset/release-id:column'"
    k: int | None = None
    "smallest combined class"
    l: dict[str, int] = field(default_factory=dict)  # noqa: E741
    "smallest number of distinct sensitive values in a combined class, per sensitive column"
    failing_records: np.ndarray | None = None
    "rows of this release in combined classes below k or l"
    earlier: dict[str, np.ndarray] = field(default_factory=dict)
    "per QI: the latest earlier published label of each joined row (None where not joined)"

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"case": self.case, "quasi_identifiers": self.quasi_identifiers, "joined": self.joined}
        if self.link:
            out["link"] = self.link
        if self.case == "joined":
            out["k"] = self.k
            if self.l:
                out["l"] = self.l
        return out


def join_columns(new: pd.DataFrame, new_ids: dict[str, str], old: pd.DataFrame, old_ids: dict[str, str]) -> list[str]:
    """Identifier-like columns both files publish under one name whose values are unique in each (record links)."""
    out = []
    for c in sorted(set(new_ids) & set(old_ids)):
        a, b = new[c].dropna(), old[c].dropna()
        if len(a) and len(b) and a.is_unique and b.is_unique and len(np.intersect1d(a.astype(str), b.astype(str))):
            out.append(c)
    return out


class _Pool:
    """Distinct regions of one column, by code: rows hold codes, so per-row work stays in NumPy."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        self.items: list[tuple[Any, ...]] = []
        self.index: dict[str, int] = {}

    def add(self, r: tuple[Any, ...]) -> int:
        key = canonical(r)
        got = self.index.get(key)
        if got is None:
            got = self.index[key] = len(self.items)
            self.items.append(r)
        return got

    def codes(self, values: pd.Series) -> np.ndarray:
        codes, uniq = pd.factorize(values.astype(object).where(values.notna(), None), use_na_sentinel=True)
        lut = np.array([self.add(self.regions.region(u)) for u in uniq] + [self.add(self.regions.region(None))],
                       dtype=np.int64)
        return lut[np.where(codes < 0, len(uniq), codes)]

    def meet(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Codes of the intersections of regions a[i] and b[i] (one intersection per distinct pair)."""
        pair = a * (len(self.items) + 1) + b
        uniq, inv = np.unique(pair, return_inverse=True)
        m = len(self.items) + 1
        out = np.array([self.add(intersect(self.items[int(u // m)], self.items[int(u % m)])) for u in uniq],
                       dtype=np.int64)
        return out[inv]


def joint_check(new: pd.DataFrame, qis: list[str], regions: dict[str, Regions], sensitive: dict[str, Any], k: int,
                earlier: list[tuple[str, pd.DataFrame, list[str]]]) -> JointResult:
    """Combine every record of `new` with its versions in `earlier` [(label, table, join columns)] and judge k and l."""
    cols = [q for q in qis if q in new.columns]
    res = JointResult(case="no predecessor" if not earlier else "not joinable", quasi_identifiers=cols)
    n = len(new)
    pools = {q: _Pool(regions[q]) for q in cols}
    # Per QI and row: the code of the combined region; start from this release's own values.
    combined = {q: pools[q].codes(new[q]) for q in cols}
    joined = np.zeros(n, dtype=bool)
    res.earlier = {q: np.full(n, None, dtype=object) for q in cols}
    for label, table, links in earlier:
        for c in links:
            right = table[[c, *[q for q in cols if q in table.columns]]].dropna(subset=[c])
            pos = pd.Series(np.arange(n), index=new[c].astype(str).to_numpy())
            hit = right[c].astype(str).isin(pos.index).to_numpy()
            if not hit.any():
                continue
            right = right[hit]
            rows = pos.loc[right[c].astype(str).to_numpy()].to_numpy()
            joined[rows] = True
            res.link.append(f"{label}:{c}")
            for q in cols:
                if q not in right.columns:
                    continue
                combined[q][rows] = pools[q].meet(combined[q][rows], pools[q].codes(right[q]))
                res.earlier[q][rows] = right[q].to_numpy(dtype=object)
            break  # one record link per earlier file is enough
    res.joined = int(joined.sum())
    if not res.joined:
        return res
    res.case = "joined"
    keys = np.zeros(n, dtype=np.int64)
    for q in cols:
        keys, _ = pd.factorize(keys * (len(pools[q].items) + 1) + combined[q])
        keys = np.asarray(keys, dtype=np.int64)
    cls = keys
    sizes = np.bincount(cls)
    res.k = int(sizes.min()) if n else None
    bad = sizes[cls] < k
    for col, spec in sensitive.items():
        if col not in new.columns or spec is None or spec.l is None:
            continue
        pairs = pd.DataFrame({"c": cls, "s": new[col].astype(str).to_numpy()}).drop_duplicates()
        distinct = np.bincount(pairs["c"].to_numpy(), minlength=len(sizes))
        res.l[col] = int(distinct.min())
        need = math.ceil(spec.l - 1e-9)
        if spec.model == "entropy":
            counts = pd.DataFrame({"c": cls, "s": new[col].astype(str).to_numpy()}).value_counts().reset_index()
            p = counts["count"].to_numpy() / sizes[counts["c"].to_numpy()]
            ent = np.zeros(len(sizes))
            np.add.at(ent, counts["c"].to_numpy(), -p * np.log(p))
            bad |= (np.exp(ent) < spec.l - 1e-9)[cls]
        else:
            bad |= (distinct < need)[cls]
    res.failing_records = np.flatnonzero(bad)
    return res
