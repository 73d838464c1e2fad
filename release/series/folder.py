"""`release check-all`: published points of one record agree across every release of its source.

A record published at two different points (two donut draws) can be averaged toward its true
location. Over the verified bundles of a publication folder, grouped by registered source, every
pair of files that share a record link (an identifier-like column unique in both, as the joint
k check uses) and both publish coordinates must give each joined record the same point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from release.context import Finding


def _source_of(bundle: Path) -> str | None:
    from release.policy.loader import parse_policy
    from release.series.config import source_name

    try:
        pol = parse_policy((bundle / "policy.yaml").read_text(encoding="utf-8-sig"), "policy.yaml")
    except Exception:  # noqa: BLE001 - a bundle whose policy does not load fails its own check
        return None
    return source_name(pol) if getattr(pol, "series", None) is not None else None


def folder_series_check(folder: Path, bundles: list[Path], options: dict[str, Any]) -> list[Finding]:
    """FOLDER_CHECKS hook: the same record is never published at two points by releases of one source."""
    from release.governance.linkage import tables_of

    by_source: dict[str, list[Any]] = {}
    for b in bundles:
        src = _source_of(b)
        if src is None:
            continue
        by_source.setdefault(src, []).extend(t for t in tables_of(b) if len(t.points()) == 2)
    out: list[Finding] = []
    for src, tables in sorted(by_source.items()):
        compared = 0
        for i, a in enumerate(tables):
            ida = a.identifiers()
            for b in tables[i + 1:]:
                idb = b.identifiers()
                for c in sorted(set(ida) & set(idb)):
                    fa, fb = a.frame.dropna(subset=[c]), b.frame.dropna(subset=[c])
                    if not (fa[c].is_unique and fb[c].is_unique):
                        continue
                    pa, pb = a.points(), b.points()
                    m = fa[[c, *pa]].merge(fb[[c, *pb]], on=c, suffixes=("_a", "_b"))
                    if m.empty:
                        continue
                    compared += 1
                    la = m[[f"{p}_a" if p in pb else p for p in pa]].apply(lambda s: s.astype(float)).to_numpy()
                    lb = m[[f"{p}_b" if p in pa else p for p in pb]].apply(lambda s: s.astype(float)).to_numpy()
                    both = ~np.isnan(la).any(axis=1) & ~np.isnan(lb).any(axis=1)
                    moved = int((both & (np.abs(la - lb) > 1e-9).any(axis=1)).sum())
                    where = f"{a.dataset}/{a.bundle}/{a.file} and {b.dataset}/{b.bundle}/{b.file} (joined on {c})"
                    out.append(Finding("series-masks", moved == 0,
                                       f"source {src}: {where}: every one of {int(both.sum())} joined record(s) keeps"
                                       " its point" if not moved else
                                       f"source {src}: {where}: {moved} of {int(both.sum())} joined record(s) are"
                                       " published at different points (averaging the releases moves toward the true"
                                       " location; keep one series source, secret and donut radii)",
                                       file=f"{a.bundle} {b.bundle}", figure=moved))
                    break
        if not compared:
            out.append(Finding("series-masks", True, f"source {src}: no record is published with a point by two"
                                                     " releases that can be joined"))
    return out
