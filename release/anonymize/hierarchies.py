"""Generalization hierarchies declared in a policy, and their integer encoding for the lattice search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import model_validator

from release.errors import InputError, PolicyError
from release.policy.base import StrictModel
from release.steps.generalize import TIME_UNITS, truncate_time

STAR = "*"
TimeUnit = Literal["hour", "day", "week", "month", "quarter", "year"]


class Hierarchy(StrictModel):
    """How one quasi-identifier may be coarsened, level by level; the last level is always '*'."""

    time: tuple[TimeUnit, ...] | None = None
    "Time levels, finest first (level 0 is the first unit): hour, day, week, month, quarter, year."
    widths: tuple[float, ...] | None = None
    "Numbers: level 0 exact, then intervals of these widths (each a multiple of the one before)."
    age: bool = False
    "Ages: exact, then 5-year and 10-year intervals, then `bands` when given."
    bands: tuple[float, ...] | None = None
    "Ages/numbers: the coarsest interval level before '*', as increasing edges."
    bottom: float | None = None
    "Numbers/ages below this are bottom-coded ('<bottom') at every level above 0: rare extremes single people out."
    top: float | None = None
    "Numbers/ages at or above this are top-coded ('top+') at every level above 0."
    tree: tuple[dict[str, str], ...] | None = None
    "Categories: one mapping per level, value at the level below -> parent (every value must be mapped)."
    csv: str | None = None
    "Categories: an ARX-style hierarchy CSV (value, level 1, level 2, ...), relative to the policy file."
    prefix: tuple[int, ...] | None = None
    "Strings: characters kept per level (e.g. postal code 3, 1), the rest masked with '*'."
    missing: Literal["category", "any"] = "category"
    "Meaning of a missing value: its own category, or 'any' (matches every value, as in sdcMicro)."

    @model_validator(mode="after")
    def _one(self) -> Hierarchy:
        kinds = [self.time is not None, self.widths is not None, self.age, self.tree is not None,
                 self.csv is not None, self.prefix is not None]
        if sum(kinds) > 1:
            raise ValueError("give at most one of time, widths, age, tree, csv, prefix")
        if self.time is not None:
            order = [TIME_UNITS.index(u) for u in self.time]
            if not self.time or order != sorted(set(order)):
                raise ValueError("time levels must be distinct units from finest to coarsest")
            if "week" in self.time[:-1]:
                raise ValueError("weeks do not nest in months, quarters or years: 'week' may only be the last time level")
        if self.widths is not None:
            w = list(self.widths)
            if not w or any(x <= 0 for x in w):
                raise ValueError("widths must be positive")
            if any(abs(b / a - round(b / a)) > 1e-9 for a, b in zip(w, w[1:], strict=False)):
                raise ValueError("each width must be a multiple of the one before (levels must nest)")
        if self.bands is not None and list(self.bands) != sorted(set(self.bands)):
            raise ValueError("bands must be increasing edges")
        if self.bottom is not None and self.top is not None and self.bottom >= self.top:
            raise ValueError("bottom must be below top")
        if self.prefix is not None and list(self.prefix) != sorted(set(self.prefix), reverse=True):
            raise ValueError("prefix lengths must decrease")
        return self

    def interval_widths(self) -> list[float]:
        if self.age:
            return [5.0, 10.0]
        return list(self.widths or ())

    def height(self, resolved_tree: list[dict[str, str]] | None = None) -> int:
        """Index of the '*' level (levels are 0..height)."""
        if self.time is not None:
            return len(self.time)
        if self.widths is not None or self.age:
            return 1 + len(self.interval_widths()) + (1 if self.bands else 0)
        if self.tree is not None or self.csv is not None:
            return 1 + len(resolved_tree if resolved_tree is not None else self.tree or ())
        if self.prefix is not None:
            return 1 + len(self.prefix)
        return 1

    def load_tree(self, base: Path | Callable[[Path], Path] | None) -> list[dict[str, str]]:
        """The category tree; `base` is the policy's folder, or a resolver (a run reads its trusted copy)."""
        if self.tree is not None:
            return [dict(m) for m in self.tree]
        if self.csv is None:
            return []
        p = Path(self.csv)
        if callable(base):
            p = base(p)
        elif not p.is_absolute() and base is not None:
            p = base / p
        try:
            raw = pd.read_csv(p, header=None, dtype=str, sep=None, engine="python", keep_default_na=False)
        except (OSError, ValueError) as e:
            raise PolicyError(f"hierarchy file {p}: cannot be read ({e})") from None
        levels = []
        for j in range(raw.shape[1] - 1):
            pairs = raw.iloc[:, [j, j + 1]].drop_duplicates()
            dup = pairs.iloc[:, 0].duplicated()
            if dup.any():
                raise PolicyError(f"hierarchy file {p}: column {j + 1} maps a value to two parents (rows "
                                  f"{(np.flatnonzero(dup.to_numpy()) + 1)[:10].tolist()}); levels must nest")
            levels.append(dict(zip(pairs.iloc[:, 0], pairs.iloc[:, 1], strict=True)))
        # A last column of '*' is ARX's convention for the top; ours adds '*' itself.
        if levels and set(levels[-1].values()) == {STAR}:
            levels = levels[:-1]
        return levels

    def generalize(self, values: pd.Series, level: int, tree: list[dict[str, str]], column: str) -> pd.Series:
        """Labels of distinct non-missing values at one level below '*' (input: a few distinct values)."""
        if level == 0 and self.time is None:
            if self.widths is not None or self.age:
                return values.map(_num_label).astype(object)
            return values.astype(str).astype(object)
        if self.time is not None:
            return truncate_time(values, self.time[level]).astype(object)
        if self.widths is not None or self.age:
            return _intervals(pd.to_numeric(values).to_numpy(dtype=float), self, level)
        if tree:
            out = values.astype(str)
            for i in range(level):
                mapped = out.map(tree[i])
                bad = mapped.isna()
                if bad.any():
                    raise InputError(f"k-anonymity: column {column!r} has {int(bad.sum())} distinct value(s) missing"
                                     f" from level {i + 1} of its hierarchy")
                out = mapped
            return out.astype(object)
        if self.prefix is not None:
            keep = self.prefix[level - 1]
            s = values.astype(str)
            return (s.str[:keep] + s.str[keep:].str.replace(r".", STAR, regex=True)).astype(object)
        raise AssertionError("unreachable")


def _num_label(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _intervals(x: np.ndarray, h: Hierarchy, level: int) -> pd.Series:
    widths = h.interval_widths()
    if level <= len(widths):
        w = widths[level - 1]
        lo = np.floor(x / w) * w
        labels = np.array([f"{_num_label(a)}-{_num_label(a + w - 1 if float(w).is_integer() else a + w)}"
                           for a in lo], dtype=object)
    else:
        edges = np.asarray(h.bands, dtype=float)
        idx = np.searchsorted(edges, x, side="right") - 1
        names = [f"{_num_label(edges[i])}-{_num_label(edges[i + 1] - 1)}" for i in range(len(edges) - 1)]
        names_arr = np.array(names + [f"{_num_label(edges[-1])}+"], dtype=object)
        labels = np.where(idx < 0, f"<{_num_label(edges[0])}", names_arr[np.clip(idx, 0, len(names))])
    if h.bottom is not None:
        labels = np.where(x < h.bottom, f"<{_num_label(h.bottom)}", labels)
    if h.top is not None:
        labels = np.where(x >= h.top, f"{_num_label(h.top)}+", labels)
    return pd.Series(labels, dtype=object)


@dataclass
class EncodedColumn:
    """One quasi-identifier as integer codes: level-0 code per record, a lookup per level."""

    name: str
    codes0: np.ndarray
    "int32 level-0 code per record (missing values have their own code)."
    maps: list[np.ndarray]
    "maps[L][code0] -> code at level L (maps[0] is the identity)."
    labels: list[np.ndarray]
    "labels[L][code] -> published label (None for missing)."
    missing: list[int]
    "code of 'missing' at each level, -1 where there is none (the '*' level merges it)."
    any_missing: bool
    "Missing values match any value (sdcMicro semantics) instead of forming their own category."

    @property
    def height(self) -> int:
        return len(self.maps) - 1

    def cards(self) -> list[int]:
        return [len(lab) for lab in self.labels]

    def step_map(self, a: int, b: int) -> np.ndarray:
        """code at level a -> code at level b (a <= b)."""
        rep = np.zeros(len(self.labels[a]), dtype=np.int64)
        rep[self.maps[a]] = np.arange(len(self.maps[a]))
        return self.maps[b][rep]


def encode_column(values: pd.Series, h: Hierarchy, name: str, base: Path | None) -> EncodedColumn:
    """Factorize once, generalize only the distinct values, and check every level nests in the next."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    u = len(uniques)
    has_missing = bool((codes < 0).any())
    codes = np.where(codes < 0, u, codes).astype(np.int32)
    card0 = u + 1 if has_missing else u
    tree = h.load_tree(base)
    height = h.height(tree)
    useries = pd.Series(uniques)
    maps: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    missing: list[int] = []
    for level in range(height):
        lab = h.generalize(useries, level, tree, name) if u else pd.Series([], dtype=object)
        lc, luniq = pd.factorize(lab.astype(object), use_na_sentinel=True)
        lc = np.asarray(lc, dtype=np.int64)
        if (lc < 0).any():
            raise InputError(f"k-anonymity: column {name!r}: {int((lc < 0).sum())} value(s) cannot be generalized"
                             f" to level {level}")
        lab_arr = np.asarray(list(luniq), dtype=object)
        if has_missing:
            lc = np.append(lc, len(lab_arr))
            lab_arr = np.append(lab_arr, np.array([None], dtype=object))
            missing.append(len(lab_arr) - 1)
        else:
            missing.append(-1)
        maps.append(lc)
        labels.append(lab_arr)
    maps.append(np.zeros(card0, dtype=np.int64))
    labels.append(np.array([STAR], dtype=object))
    missing.append(-1)
    for a in range(height):
        pairs = np.unique(maps[a] * (len(labels[a + 1]) + 1) + maps[a + 1])
        if len(pairs) != len(labels[a]):
            raise PolicyError(f"k-anonymity: the hierarchy of {name!r} does not nest: level {a} values map to"
                              f" several level {a + 1} values (e.g. age bands that cut 10-year intervals)")
    # Level 0 may already be coarser than the raw values (time truncated to its first unit):
    # re-base every map on level-0 codes.
    rep = np.zeros(len(labels[0]), dtype=np.int64)
    rep[maps[0]] = np.arange(len(maps[0]))
    codes = maps[0][codes].astype(np.int32)
    maps = [mp[rep] for mp in maps]
    return EncodedColumn(name=name, codes0=codes, maps=maps, labels=labels, missing=missing,
                         any_missing=h.missing == "any" and has_missing)
