"""Identifier scan benchmark: 1M-row published column with 10,000 planted identifiers; recall, false hits, time.

The peer is the same phone and email patterns applied with pandas `str.contains` (Python's `re`,
one call per row), the way the scan worked before it moved to pyarrow's RE2 over distinct values.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from faker import Faker

from release.outputs.identifiers import CHECKS, PATTERNS, match_mask, scan_values

N = int(os.environ.get("BENCH_IDENT_N", "1000000"))
K = int(os.environ.get("BENCH_IDENT_PLANTED", "10000"))
HELD_OUT = ("fi_FI", "it_IT")
"Name locales left out of the scanner's lists: planted names are drawn from them."


def column(n: int, k: int, seed: int = 7) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Half category labels, half distinct event ids; k planted identifiers (phones, emails, names)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["Assault", "Break and Enter", "Auto Theft", "Theft Over", "Robbery - Mugging",
                       "Apartment (Rooming House, Condo)", "Lawrence Park North", "NSA", "D14"], dtype=object)
    col = labels[rng.integers(0, len(labels), n)].astype(object)
    ids = rng.random(n) < 0.5
    col[ids] = np.char.add("GO-", rng.integers(10**10, 10**11, int(ids.sum())).astype(str)).astype(object)
    where = rng.choice(n, k, replace=False)
    fakes = [Faker(loc) for loc in HELD_OUT]
    for i, f in enumerate(fakes):
        f.seed_instance(i)
    kinds = np.empty(k, dtype=object)
    values = np.empty(k, dtype=object)
    for i in range(k):
        a, b, c = rng.integers(200, 999), rng.integers(200, 999), rng.integers(0, 9999)
        kind = ("phone", "email", "person-name")[i % 3]
        if kind == "phone":
            values[i] = [f"{a}{b}{c:04d}", f"({a}){b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 {a} {b} {c:04d}",
                         f"{a}.{b}.{c:04d}", f"1-{a}-{b}-{c:04d}", f"({a}) {b}-{c:04d}"][i % 7]
        elif kind == "email":
            values[i] = [f"user{i}@example.com", f"user{i}(at)example.com",
                         f"user{i} [at] example [dot] com"][i % 3]
        else:
            f = fakes[i % len(fakes)]
            values[i] = f"{f.first_name()} {f.last_name()}"
        kinds[i] = kind
    col[where] = values
    return pd.Series(col, dtype="string"), where, kinds


def main() -> None:
    s, where, kinds = column(N, K)
    scan_values(s.iloc[:1000])  # load the name lists once (Faker providers, English words)
    match_mask(s.iloc[:10], "person-name", HELD_OUT)
    t = time.perf_counter()
    hits = scan_values(s, CHECKS)
    t_scan = time.perf_counter() - t
    background = np.setdiff1d(np.arange(N), where)
    rows = []
    for check in ("phone", "email", "person-name"):
        m = match_mask(s, check, HELD_OUT if check == "person-name" else ())
        planted = where[kinds == check]
        rows.append((check, len(planted), int(m[planted].sum()), int(m[background].sum())))
    t = time.perf_counter()
    peer = 0
    for pat in (PATTERNS["phone"], PATTERNS["email"].replace("(?i)", "")):
        peer += int(s.str.contains(pat, regex=True, case=False).sum())
    t_peer = time.perf_counter() - t
    t = time.perf_counter()
    scan_values(s, ["phone", "email"])
    t_same = time.perf_counter() - t
    print(f"{N:,} rows, {K:,} planted identifiers, {s.nunique():,} distinct values")
    print(f"{'check':<14}{'planted':>10}{'found':>10}{'recall':>9}{'false hits':>12}")
    for check, n, found, false in rows:
        print(f"{check:<14}{n:>10,}{found:>10,}{found / n:>9.3f}{false:>12,}")
    print(f"names drawn from Faker locales {', '.join(HELD_OUT)}, which the scanner's lists leave out")
    print(f"{'what':<62}{'seconds':>9}{'ratio':>9}")
    print(f"{'pandas str.contains, phone + email, every row (peer)':<62}{t_peer:>9.3f}{1:>8.2f}x")
    print(f"{'engine scan, phone + email, every distinct value':<62}{t_same:>9.3f}{t_same / t_peer:>8.2f}x")
    print(f"{'engine scan, all six checks (distinct values found: ' + str(sum(hits.values())) + ')':<62}"
          f"{t_scan:>9.3f}{t_scan / t_peer:>8.2f}x")


if __name__ == "__main__":
    main()
