"""Benchmark: secondary suppression at portal scale, the fast path vs the per-cell LP method vs naive."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np

from release.tables.audit import attack
from release.tables.model import (
    TableModel,
    TableShape,
    build_model,
    cube_with_margins,
    global_values,
)
from release.tables.primary import threshold_rule
from release.tables.secondary import protect_fast, protect_lp, protect_naive

THRESHOLD = 5
WIDTH = 5.0


def make_table(shape: tuple[int, ...], seed: int = 2026, scale: float = 1.0) -> np.ndarray:
    """Counts with a realistic long tail: lognormal cell means, Poisson counts (about 5-10% small)."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.normal(3.2, 1.1, size=shape)) * scale
    return rng.poisson(means).astype(float)


def _shape(name: str, dims: tuple[str, ...], sizes: tuple[int, ...]) -> TableShape:
    return TableShape(name, dims, tuple(tuple(f"{d}_{j}" for j in range(s)) for d, s in zip(dims, sizes, strict=True)))


def single(sizes: tuple[int, ...]) -> Callable[[], tuple[TableModel, np.ndarray]]:
    def build() -> tuple[TableModel, np.ndarray]:
        dims = tuple(f"d{i}" for i in range(len(sizes)))
        model = build_model([_shape("t", dims, sizes)])
        return model, global_values(model, [cube_with_margins(make_table(sizes))])
    return build


def linked(joint: bool) -> Callable[[], tuple[TableModel, np.ndarray]]:
    """Two TPS-shaped 3-D tables of the same counts: neighbourhood x category x month and
    neighbourhood x category x division (each month's count split over 4 divisions, unevenly), sharing
    the neighbourhood x category margin."""
    def build() -> tuple[TableModel, np.ndarray]:
        by_month = make_table((158, 9, 12))
        rng = np.random.default_rng(7)
        split = rng.multinomial(by_month.astype(np.int64), rng.dirichlet(np.ones(4) * 0.1, size=(158, 9, 12)))
        by_division = split.sum(axis=2).astype(float)
        a = _shape("month", ("area", "category", "month"), (158, 9, 12))
        b = _shape("division", ("area", "category", "division"), (158, 9, 4))
        tables = [a, b] if joint else [a]
        cubes = [cube_with_margins(by_month), cube_with_margins(by_division)]
        model = build_model(tables)
        return model, global_values(model, cubes[: len(tables)])
    return build


TABLES: list[tuple[str, Callable[[], tuple[TableModel, np.ndarray]], tuple[str, ...], tuple[str, ...]]] = [
    # name, builder, methods by default, extra methods with BENCH_TABLES_COMPARE=1
    ("200x50", single((200, 50)), ("fast", "per-cell", "naive"), ()),
    ("20x20x10", single((20, 20, 10)), ("fast", "per-cell", "naive"), ()),
    ("1000x100", single((1000, 100)), ("fast",), ("per-cell",)),
    ("158x9x12", single((158, 9, 12)), ("fast",), ("per-cell",)),
    ("50x50x20", single((50, 50, 20)), (), ("fast",)),
    ("linked: one", linked(False), ("fast",), ()),
    ("linked: both", linked(True), ("fast",), ()),
]


def _cpu() -> float:
    """CPU seconds of this process and its finished workers: less sensitive than wall time to
    the other jobs sharing the two cores."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_one(name: str, build: Callable[[], tuple[TableModel, np.ndarray]], method: str) -> dict[str, object]:
    model, v = build()
    primary = threshold_rule(v, THRESHOLD, protect_zeros=False)
    c1 = _cpu()
    t1 = time.perf_counter()
    if method == "fast":
        prot = protect_fast(model, v, primary, absolute=WIDTH)
    elif method == "per-cell":
        prot = protect_lp(model, v, primary, absolute=WIDTH)
    else:
        prot = protect_naive(model, v, primary, absolute=WIDTH)
    t2 = time.perf_counter()
    c2 = _cpu()
    # Independent re-audit from the published values only (what `release check` does: every
    # suppressed cell must keep the required width; BENCH_TABLES_EXACT=1: every exact interval).
    exact = os.environ.get("BENCH_TABLES_EXACT") == "1"
    audit = attack(model, np.where(prot.suppressed, np.nan, v), need=np.where(prot.suppressed, WIDTH, np.nan),
                   exact=exact)
    t3 = time.perf_counter()
    c3 = _cpu()
    ok = bool(np.all(audit.width[primary] >= WIDTH - 1e-9)) and audit.consistent
    return {"table": name, "cells": model.n, "primary": int(primary.sum()), "method": method,
            "secondary": int(prot.secondary.sum()), "protect_s": round(t2 - t1, 2), "audit_s": round(t3 - t2, 2),
            "protect_cpu": round(c2 - c1, 2), "audit_cpu": round(c3 - c2, 2), "smallest": audit.smallest_width(), "passes": ok,
            "proved": int(audit.inexact.sum()) if audit.inexact is not None else 0}


def main(methods: tuple[str, ...] = ()) -> list[dict[str, object]]:
    compare = os.environ.get("BENCH_TABLES_COMPARE") == "1"
    only = os.environ.get("BENCH_TABLES_ONLY")
    rows = []
    head = (f"{'table':>13} {'cells':>6} {'primary':>7} {'method':>8} {'secondary':>9} {'protect s':>9} "
            f"{'audit s':>7} {'cpu s':>11} {'smallest':>8} {'passes':>6} {'proved':>6}")
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start (other jobs share the machine)")
    print(head)
    print("-" * len(head))
    for name, build, default, extra in TABLES:
        if only and name not in only.split(","):
            continue
        todo = methods or (default + (extra if compare else ()))
        got = {}
        for m in todo:
            r = run_one(name, build, m)
            got[m] = r
            rows.append(r)
            cpu = f"{r['protect_cpu']}+{r['audit_cpu']}"
            print(f"{name:>13} {r['cells']:>6} {r['primary']:>7} {m:>8} {r['secondary']:>9} {r['protect_s']:>9} "
                  f"{r['audit_s']:>7} {cpu:>11} {r['smallest']!s:>8} {r['passes']!s:>6} {r['proved']:>6}", flush=True)
        f = got.get("fast")
        if f:
            for other in ("per-cell", "naive"):
                o = got.get(other)
                if o:
                    print(f"{'':>13} {other}/fast: secondary x{o['secondary'] / max(int(f['secondary']), 1):.2f},"
                          f" protect+audit time x{(o['protect_s'] + o['audit_s']) / max(f['protect_s'] + f['audit_s'], 1e-3):.2f}")
    one = next((r for r in rows if r["table"] == "linked: one"), None)
    both = next((r for r in rows if r["table"] == "linked: both"), None)
    if one and both:
        print(f"linked tables protected jointly / one table alone: time x"
              f"{(both['protect_s'] + both['audit_s']) / max(one['protect_s'] + one['audit_s'], 1e-3):.2f},"
              f" cpu x{(both['protect_cpu'] + both['audit_cpu']) / max(one['protect_cpu'] + one['audit_cpu'], 1e-3):.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return rows


if __name__ == "__main__":
    main(tuple(sys.argv[1:]))
