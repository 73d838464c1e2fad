"""Benchmark: secondary suppression of a 200 x 50 and a 20 x 20 x 10 table, LP method vs naive baseline."""

from __future__ import annotations

import time

import numpy as np

from release.tables.audit import attack
from release.tables.model import TableShape, build_model, cube_with_margins, global_values
from release.tables.primary import threshold_rule
from release.tables.secondary import protect_lp, protect_naive

THRESHOLD = 5
WIDTH = 5.0
SHAPES = [(200, 50), (20, 20, 10)]


def make_table(shape: tuple[int, ...], seed: int = 2026) -> np.ndarray:
    """Counts with a realistic long tail: lognormal cell means, Poisson counts (about 5-10% small)."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.normal(3.2, 1.1, size=shape))
    return rng.poisson(means).astype(float)


def run_one(shape: tuple[int, ...], method: str) -> dict[str, object]:
    dims = tuple(f"d{i}" for i in range(len(shape)))
    t = TableShape("bench", dims, tuple(tuple(f"{d}_{j}" for j in range(s)) for d, s in zip(dims, shape, strict=True)))
    t0 = time.perf_counter()
    model = build_model([t])
    v = global_values(model, [cube_with_margins(make_table(shape))])
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    t1 = time.perf_counter()
    if method == "lp":
        prot = protect_lp(model, v, primary, absolute=WIDTH)
    elif method == "lp-whole":
        prot = protect_lp(model, v, primary, absolute=WIDTH, local=max(shape))
    else:
        prot = protect_naive(model, v, primary, absolute=WIDTH)
    t2 = time.perf_counter()
    # Independent re-audit from the published values only (what `release check` does).
    audit = attack(model, np.where(prot.suppressed, np.nan, v))
    t3 = time.perf_counter()
    ok = bool(np.all(audit.width[primary] >= WIDTH - 1e-9))
    return {"table": "x".join(map(str, shape)), "cells": model.n, "primary": int(primary.sum()), "method": method,
            "secondary": int(prot.secondary.sum()), "seconds": round(t2 - t1, 2), "audit_s": round(t3 - t2, 2),
            "model_s": round(t1 - t0, 2), "smallest": audit.smallest_width(), "passes": ok}


def main(methods: tuple[str, ...] = ("lp", "lp-whole", "naive")) -> list[dict[str, object]]:
    rows = []
    head = f"{'table':>10} {'cells':>6} {'primary':>7} {'method':>8} {'secondary':>9} {'protect s':>9} " \
           f"{'audit s':>7} {'smallest':>8} {'passes':>6}"
    print(head)
    print("-" * len(head))
    for shape in SHAPES:
        got = {}
        for m in methods:
            r = run_one(shape, m)
            got[m] = r
            rows.append(r)
            print(f"{r['table']:>10} {r['cells']:>6} {r['primary']:>7} {m:>8} {r['secondary']:>9} {r['seconds']:>9} "
                  f"{r['audit_s']:>7} {r['smallest']!s:>8} {r['passes']!s:>6}", flush=True)
        if "lp" in got and "naive" in got:
            _lp, nv = got["lp"], got["naive"]
            for name in ("lp", "lp-whole"):
                if name in got:
                    r = got[name]
                    print(f"{'':>10} naive/{name}: secondary x{nv['secondary'] / max(r['secondary'], 1):.2f},"
                          f" time x{nv['seconds'] / max(r['seconds'], 1e-3):.2f}")
    return rows


if __name__ == "__main__":
    import sys

    main(tuple(sys.argv[1:]) or ("lp", "lp-whole", "naive"))
