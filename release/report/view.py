"""Turn report.json (plus the bundle's published files) into the sections the HTML report shows."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from release.report import charts

MAX_TABLE_ROWS = 50
"Tables longer than this are collapsed to a summary, with a link to the published file when there is one."
MAX_CHART_CELLS = 40
VALUE_COLUMNS = ("count", "noisy_count", "value", "sum", "noisy_sum", "mean", "noisy_mean", "n")


@dataclass
class Block:
    """One titled piece of a section: facts (label, value), tables, charts and notes."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    css: str = ""


def fmt(v: Any) -> str:
    """A figure as people read it: thousands separators, 4 significant digits, lists joined."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e7):
            return f"{v:.3e}"
        return f"{v:,.4g}" if abs(v) >= 1 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if all(not isinstance(x, (dict, list)) for x in v):
            items = [fmt(x) for x in v[:30]]
            return ", ".join(items) + (f" … (+{len(v) - 30})" if len(v) > 30 else "")
        return json.dumps(v, default=str)[:400]
    if isinstance(v, dict):
        return "; ".join(f"{k}: {fmt(x)}" for k, x in list(v.items())[:20])
    return str(v)


def label(key: str) -> str:
    return str(key).replace("_", " ")


def kv_facts(d: dict[str, Any], skip: set[str] | None = None) -> list[tuple[str, str]]:
    return [(label(k), fmt(v)) for k, v in d.items() if not (skip and k in skip)]


def generic_block(title: str, d: Any, skip: set[str] | None = None) -> Block:
    """Any figure dict: scalars as facts, dicts of dicts and lists of dicts as tables."""
    b = Block(title)
    if not isinstance(d, dict):
        b.facts.append((label(title), fmt(d)))
        return b
    for k, v in d.items():
        if skip and k in skip:
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            b.tables.append(records_table(label(k), v))
        elif isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            b.tables.append(records_table(label(k), [{"": kk, **x} for kk, x in v.items()]))
        else:
            b.facts.append((label(k), fmt(v)))
    return b


def records_table(caption: str, rows: list[dict[str, Any]], limit: int = MAX_TABLE_ROWS,
                  link: str | None = None) -> dict[str, Any]:
    """A table for the page; over `limit` rows it is collapsed, shows the first rows and links the published file."""
    cols: list[str] = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    body = [[fmt(r.get(c)) for c in cols] for r in rows[:limit]]
    long = len(rows) > limit
    note = (f"first {limit} of {len(rows):,} rows shown" + (f"; every row is in {link}" if link else "")) if long else ""
    return {"caption": caption, "header": [label(c) for c in cols], "rows": body, "note": note,
            "collapsed": long, "count": len(rows), "link": link if long else None}


def read_table(files: dict[str, bytes], paths: list[str]) -> tuple[str, pd.DataFrame] | None:
    for p in paths:
        if p.endswith(".csv") and p in files:
            try:
                return p, pd.read_csv(io.BytesIO(files[p]), dtype=str, keep_default_na=False, na_values=[""])
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def value_column(t: pd.DataFrame) -> str | None:
    for c in VALUE_COLUMNS:
        if c in t.columns:
            return c
    numeric = [c for c in t.columns if pd.to_numeric(t[c], errors="coerce").notna().sum() >= max(1, t[c].notna().sum())
               and t[c].notna().any()]
    return numeric[-1] if numeric else None


# ---------------------------------------------------------------- per-kind blocks


def anonymity_block(a: dict[str, Any], gate: dict[str, Any]) -> Block:
    b = Block("Re-identification risk (k-anonymity, l-diversity)")
    for k in ("quasi_identifiers", "k", "sample_uniques"):
        if k in a:
            b.facts.append((label(k), fmt(a[k])))
    if gate.get("min_k") is not None:
        b.facts.append(("policy minimum k", fmt(gate["min_k"])))
    if isinstance(a.get("l"), dict) and a["l"]:
        rows = [{"sensitive column": c, **(v if isinstance(v, dict) else {"l": v})} for c, v in a["l"].items()]
        b.tables.append(records_table("l-diversity per sensitive column", rows))
    risk = a.get("risk")
    if isinstance(risk, dict) and risk:
        rows = [{"attacker model": m, **(v if isinstance(v, dict) else {"value": v})} for m, v in risk.items()]
        b.tables.append(records_table("Re-identification risk by attacker model", rows))
    if "population_uniqueness" in a:
        pu = a["population_uniqueness"]
        if isinstance(pu, dict):
            b.facts.extend((f"population uniqueness: {label(k)}", fmt(v)) for k, v in pu.items())
        else:
            b.facts.append(("population uniqueness", fmt(pu)))
    dist = a.get("class_size_distribution")
    if isinstance(dist, dict) and dist:
        try:
            b.charts.append(charts.class_sizes(dist, gate.get("min_k") or a.get("k_required")))
        except (TypeError, ValueError):
            b.notes.append("class-size distribution could not be charted")
    rest = {k: v for k, v in a.items() if k not in {"quasi_identifiers", "k", "sample_uniques", "l", "risk",
                                                    "population_uniqueness", "class_size_distribution"}}
    b.facts.extend(kv_facts(rest))
    return b


def reidentification_block(pub: dict[str, Any]) -> Block:
    """Uniqueness over every published column an attacker could know (with and without the point)."""
    b = Block("Re-identification over everything published")
    if pub.get("statement"):
        b.notes.append(str(pub["statement"]))
    rows = [{"columns": fmt(pub.get("columns")), "k": pub.get("k"), "classes": pub.get("classes"),
             "sample uniques": (pub.get("sample_uniques") or {}).get("records"),
             "share unique": (pub.get("sample_uniques") or {}).get("share"),
             "highest prosecutor risk": (pub.get("prosecutor") or {}).get("highest")}]
    wp = pub.get("without_point")
    if isinstance(wp, dict):
        rows.append({"columns": fmt(wp.get("columns")) + " (without the point)", "k": wp.get("k"),
                     "classes": wp.get("classes"), "sample uniques": (wp.get("sample_uniques") or {}).get("records"),
                     "share unique": (wp.get("sample_uniques") or {}).get("share"),
                     "highest prosecutor risk": (wp.get("prosecutor") or {}).get("highest")})
    b.tables.append(records_table("Classes over the published identifying columns", rows))
    if pub.get("beyond_k_step"):
        b.facts.append(("published beside the k step (not covered by its k)", fmt(pub["beyond_k_step"])))
    return b


_COORDS = re.compile(rb'"geometry":\{"type":"Point","coordinates":\[([^\]]*)\]\}')
_POINTS_CACHE: dict[tuple[str, int, bytes], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _geojson_points(data: bytes) -> np.ndarray:
    """(n, 2) lon/lat of the Point features: read straight from the bytes the engine writes (one feature
    a line), without building a million dicts; any other layout goes through the JSON parser."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    found = _COORDS.findall(data)
    if len(found) == data.count(b'"type":"Feature"'):
        if not found:
            return np.zeros((0, 2))
        try:
            t = pacsv.read_csv(pa.BufferReader(b"\n".join(found)),
                               read_options=pacsv.ReadOptions(column_names=["x", "y"]),
                               convert_options=pacsv.ConvertOptions(column_types={"x": pa.float64(),
                                                                                  "y": pa.float64()}))
            if t.num_rows == len(found) and t["x"].null_count == 0 and t["y"].null_count == 0:
                return np.column_stack([t["x"].to_numpy(), t["y"].to_numpy()])
        except (pa.ArrowException, ValueError):
            pass
    doc = json.loads(data)
    coords = [f["geometry"]["coordinates"] for f in doc.get("features", [])
              if (f.get("geometry") or {}).get("type") == "Point"]
    return np.asarray(coords, dtype=float).reshape(-1, 2)


def _points(files: dict[str, bytes], paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Distinct published coordinates and records per point, from the output's GeoJSON (an aggregate:
    one entry per distinct point, whatever the number of records)."""
    for p in paths:
        staged = files.staged(p) if hasattr(files, "staged") else None
        if staged is not None and staged.points is not None:
            return staged.points  # kept by the writer as it wrote the features (release.io.stream)
        if p.endswith(".geojson") and p in files:
            data = files[p]
            # The public and the internal page both draw it: parse once per file.
            key = (p, len(data), hashlib.sha256(data).digest())
            if key not in _POINTS_CACHE:
                arr = _geojson_points(data)
                # Points as complex numbers (lon + i lat): one 1-D sort orders them as rows (lon, lat).
                z, counts = np.unique(arr[:, 0] + 1j * arr[:, 1], return_counts=True)
                _POINTS_CACHE.clear()
                _POINTS_CACHE[key] = (z.real.copy(), z.imag.copy(), counts if len(arr) else np.zeros(0))
            return _POINTS_CACHE[key]
    return None


def location_block(loc: dict[str, Any] | None, files: dict[str, bytes], paths: list[str],
                   areas: dict[str, Any] | None, gate: dict[str, Any]) -> Block:
    b = Block("Locations")
    loc = loc or {}
    if "method" in loc:
        b.facts.append(("masking method", fmt(loc["method"])))
    for k in ("distinct_points", "units_per_point", "min_addresses_per_node", "area_changed"):
        if k in loc:
            b.facts.append((label(k), fmt(loc[k])))
    if gate.get("min_addresses") is not None:
        b.facts.append(("policy minimum addresses per node", fmt(gate["min_addresses"])))
    if isinstance(loc.get("records_per_point"), dict):
        b.facts.extend((f"records per point: {k}", fmt(v)) for k, v in loc["records_per_point"].items())
    if isinstance(loc.get("share_records_below"), dict):
        b.facts.extend((f"share of records at nodes below {k} addresses", fmt(v))
                       for k, v in loc["share_records_below"].items())
    w = loc.get("withheld")
    if isinstance(w, dict):
        b.facts.append(("records with location withheld", fmt(w.get("count"))))
        if isinstance(w.get("reasons"), dict) and w["reasons"]:
            b.tables.append(records_table("Why locations were withheld",
                                          [{"reason": r, "records": n} for r, n in w["reasons"].items()]))
    elif w is not None:
        b.facts.append(("withheld", fmt(w)))
    disp = loc.get("displacement_m")
    hist = loc.get("displacement_histogram")
    if isinstance(disp, dict) and disp:
        b.facts.extend((f"displacement {k} (m)", fmt(v)) for k, v in disp.items())
    edges = hist.get("edges_m") if isinstance(hist, dict) else None
    counts = hist.get("counts") if isinstance(hist, dict) else None
    if isinstance(edges, list) and isinstance(counts, list) and counts and \
            len(edges) in (len(counts), len(counts) + 1):
        # Drop empty bands at the far end so the chart shows where records are.
        last = max((i for i, c in enumerate(counts) if c), default=len(counts) - 1)
        b.charts.append(charts.displacement_histogram(edges[:last + 2], counts[:last + 1],
                                                      disp if isinstance(disp, dict) else {}))
    elif isinstance(disp, dict) and disp:
        b.charts.append(charts.displacement(disp))
    pts = _points(files, paths)
    if pts is not None:
        lon, lat, counts = pts
        b.charts.append(charts.point_map(lon, lat, counts, areas,
                                         f"Published points ({len(lon):,} distinct)"))
        if areas is None:
            b.notes.append("the policy's steps name no area layer: the points are drawn without boundaries")
        else:
            b.notes.append("boundaries: the area layer the policy's steps used (as approved, by sha256)")
    known = {"method", "distinct_points", "units_per_point", "min_addresses_per_node", "area_changed",
             "records_per_point", "share_records_below", "withheld", "displacement_m", "displacement_histogram"}
    b.facts.extend(kv_facts({k: v for k, v in loc.items() if k not in known}))
    return b


def _interval_arrays(t: pd.DataFrame, vcol: str, acc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    v = pd.to_numeric(t[vcol], errors="coerce").to_numpy(dtype=float)
    if isinstance(acc, (int, float)):
        half = np.full(len(v), float(acc))
    elif isinstance(acc, list) and len(acc) == len(v):
        half = np.asarray([float(x) if isinstance(x, (int, float)) else np.nan for x in acc])
    else:
        for c in ("accuracy_95", "ci95", "error_95"):
            if c in t.columns:
                half = pd.to_numeric(t[c], errors="coerce").to_numpy(dtype=float)
                break
        else:
            return None
    return v, v - half, v + half


def dp_block(dp: dict[str, Any], files: dict[str, bytes], paths: list[str], budget: Any) -> Block:
    b = Block("Differential privacy")
    if dp.get("warning"):
        b.notes.append(str(dp["warning"]))
    for k in ("mechanism", "epsilon", "rho", "delta", "scale", "accuracy_95", "key_source", "threshold", "cells"):
        if k in dp:
            b.facts.append((label(k), fmt(dp[k])))
    if "post_processing" in dp:
        b.facts.append(("post-processing", fmt(dp["post_processing"])))
    rest = {k: v for k, v in dp.items() if k not in {"mechanism", "epsilon", "rho", "delta", "scale", "accuracy_95",
                                                     "key_source", "threshold", "cells", "post_processing"}}
    b.facts.extend(kv_facts(rest))
    if isinstance(budget, dict):
        before = budget.get("spent_in_period_before") or {}
        after = budget.get("spent_in_period_after") or {}
        for m in ("epsilon", "rho"):
            if isinstance(after.get(m), (int, float)) and after.get(m):
                b.facts.append((f"ledger {m} in period: before → after this release",
                                f"{fmt(before.get(m))} → {fmt(after.get(m))}"))
        b.notes.append("The whole ledger, with its caps, is charted under 'Privacy budget and ledger' below.")
    got = read_table(files, paths)
    if got is not None:
        path, t = got
        vcol = value_column(t)
        arr = _interval_arrays(t, vcol, dp.get("accuracy_95")) if vcol else None
        if arr is not None and vcol is not None:
            v, lo, hi = arr
            if dp.get("intervals_truncated_at_zero"):
                lo = np.maximum(lo, 0.0)  # the published values are clipped at zero: so is the interval
            keys = [c for c in t.columns if c != vcol and c not in ("accuracy_95", "ci95", "error_95")]
            labels = [" · ".join(str(t[c].iloc[i]) for c in keys) or str(i) for i in range(len(t))]
            ok = ~np.isnan(v)
            idx = np.flatnonzero(ok)
            shown = idx[:MAX_CHART_CELLS]
            if len(shown):
                b.charts.append(charts.intervals([labels[i] for i in shown], v[shown], lo[shown], hi[shown],
                                                 f"{path}: published values with 95% intervals"))
            if len(idx) > len(shown):
                b.notes.append(f"the chart shows the first {len(shown)} of {len(idx):,} cells; the table lists them all")
            rows = [{**{c: t[c].iloc[i] for c in keys}, vcol: t[vcol].iloc[i],
                     "95% interval": "—" if np.isnan(v[i]) else f"[{lo[i]:,.1f}, {hi[i]:,.1f}]"}
                    for i in range(min(len(t), MAX_TABLE_ROWS + 1))]
            tab = records_table(f"{path}: cells with 95% intervals", rows, link=path)
            if len(t) > MAX_TABLE_ROWS:
                tab["note"] = f"first {MAX_TABLE_ROWS} of {len(t):,} cells shown; every cell is in {path}"
                tab["count"] = len(t)
            b.tables.append(tab)
            b.notes.append("Intervals are the published value ± the 95% accuracy bound of the noise"
                           + (", truncated at zero as the values are" if dp.get("intervals_truncated_at_zero") else "")
                           + ": the true count lies inside with 95% probability; they use only public figures.")
    return b


def budget_block(budget: Any) -> Block:
    """The ledger before and after this release against the caps, per privacy measure."""
    if not isinstance(budget, dict):
        return generic_block("Privacy budget", {"budget": budget})
    b = Block("Privacy budget and ledger")
    for k in ("dataset", "privacy_unit", "release_id", "period_days"):
        if k in budget:
            b.facts.append((label(k), fmt(budget[k])))
    before, after = budget.get("spent_in_period_before"), budget.get("spent_in_period_after")
    asked, caps = budget.get("asked") or {}, budget.get("caps") or {}
    if isinstance(before, dict) and isinstance(after, dict):
        rows = []
        for m in sorted(set(before) | set(after) | set(asked)):
            per_rel = (caps.get("per_release") or {}).get(m)
            per_per = (caps.get("per_period") or {}).get(m)
            vals = [before.get(m), asked.get(m), after.get(m), per_rel, per_per]
            if not any(isinstance(v, (int, float)) and v for v in vals):
                continue
            rows.append({"measure": m, "spent before": before.get(m), "this release": asked.get(m),
                         "spent after": after.get(m), "cap per release": per_rel, "cap per period": per_per,
                         "left in period": (budget.get("left_in_period") or {}).get(m)})
            names = ["ledger before", "this release", "ledger after", "cap per release", "cap per period"]
            pairs = [(n, float(v)) for n, v in zip(names, vals, strict=True) if isinstance(v, (int, float))]
            b.charts.append(charts.bars([n for n, _ in pairs], [v for _, v in pairs],
                                        f"{m}: ledger before and after this release", m,
                                        highlight=[n.startswith("cap") for n, _ in pairs]))
        if rows:
            b.tables.append(records_table("Ledger (rolling period)", rows))
        if isinstance(budget.get("spends"), list):
            b.tables.append(records_table("Spends of this release", budget["spends"]))
        return b
    return generic_block("Privacy budget and ledger", budget)


def suppression_block(s: dict[str, Any], files: dict[str, bytes], paths: list[str], gate: dict[str, Any]) -> Block:
    b = Block("Small-cell suppression")
    for k in ("cells", "primary", "secondary", "suppressed_cells", "smallest_interval", "required_interval"):
        if k in s:
            b.facts.append((label(k), fmt(s[k])))
    if gate.get("min_audit_interval") is not None:
        b.facts.append(("policy smallest audited interval", fmt(gate["min_audit_interval"])))
    cells = s.get("cells")
    prim, sec = s.get("primary"), s.get("secondary")
    if isinstance(cells, (int, float)) and isinstance(prim, (int, float)) and isinstance(sec, (int, float)):
        b.charts.append(charts.stacked_share({"published": max(float(cells) - prim - sec, 0.0),
                                              "primary": float(prim), "secondary": float(sec)},
                                             "Cells published and suppressed"))
    audit = s.get("audit")
    if isinstance(audit, list) and audit and all(isinstance(x, dict) for x in audit):
        b.tables.append(records_table("LP audit: interval an attacker can recompute for each suppressed cell", audit))
        b.tables[-1]["collapsed"] = True  # engineering detail: collapsed with its count, whatever its length
    b.facts.extend(kv_facts({k: v for k, v in s.items() if k not in {"cells", "primary", "secondary",
                                                                     "suppressed_cells", "smallest_interval",
                                                                     "required_interval", "audit"}}))
    for path in [p for p in paths if p.endswith(".csv")]:
        got = read_table(files, [path])
        if got is None:
            continue
        _, t = got
        vcol = value_column(t)
        rows = []
        for rec in t.astype(object).where(t.notna(), None).to_dict("records"):
            # An empty measure is a suppressed cell: say so, and never show anything in its place.
            rows.append({c: ("suppressed" if c == vcol else "") if v is None else v for c, v in rec.items()})
        b.tables.append(records_table(f"{path} as published (suppressed cells are empty in the file)", rows, link=path))
    return b


def fallback_chart(files: dict[str, bytes], paths: list[str], name: str) -> str | None:
    """A chart every output gets: published records by a low-cardinality column, or the table's values."""
    got = read_table(files, paths)
    if got is None:
        return None
    path, t = got
    if t.empty:
        return None
    vcol = value_column(t)
    if vcol is not None and len(t) <= 60 and t.shape[1] >= 2:
        keys = [c for c in t.columns if c != vcol]
        vals = pd.to_numeric(t[vcol], errors="coerce").fillna(0).to_numpy(dtype=float)
        labels = [" · ".join(str(t[c].iloc[i]) for c in keys[:3]) for i in range(len(t))]
        return charts.bars(labels, list(vals), f"{path}: published values", vcol)
    for c in t.columns:
        n = t[c].nunique(dropna=True)
        if 2 <= n <= 25:
            vc = t[c].fillna("(blank)").value_counts().sort_index()
            return charts.bars([str(x) for x in vc.index], list(vc.to_numpy(dtype=float)),
                               f"{path}: published records by {c}", "records")
    return None


def indices_block(ix: dict[str, Any], files: dict[str, bytes], paths: list[str]) -> Block:
    """Benchmarking indices with their intervals: one chart per benchmark and measure, the table, the method."""
    b = Block("Benchmarking indices (multiple benchmarking)")
    b.facts.append(("groups", f"{ix.get('group')}; disparity relative to {ix.get('reference')}"))
    for bm in ix.get("benchmarks") or []:
        if isinstance(bm, dict):
            b.facts.append((f"benchmark {bm.get('name')}", fmt(bm.get("description") or bm.get("source"))))
    b.facts.append(("interval methods", fmt(ix.get("methods"))))
    main = next((p for p in paths if p.endswith(".csv") and not p.endswith("_benchmarks.csv")), None)
    got = read_table(files, [main]) if main else None
    if got is not None:
        path, t = got
        for (bench, measure), sub in t.groupby(["benchmark", "measure"], sort=False):
            v = pd.to_numeric(sub["index"], errors="coerce").to_numpy(dtype=float)
            lo = pd.to_numeric(sub["lower"], errors="coerce").to_numpy(dtype=float)
            hi = pd.to_numeric(sub["upper"], errors="coerce").to_numpy(dtype=float)
            b.charts.append(charts.index_intervals(list(sub["group"].astype(str)), v, lo, hi,
                                                   f"{measure} vs {bench}"))
        rows = [{k: r[k] for k in ("group", "benchmark", "measure", "index", "lower", "upper", "method", "flag")
                 if k in r} for r in t.astype(object).where(t.notna(), None).to_dict("records")]
        b.tables.append(records_table(f"{path}: indices with 95% intervals (empty upper: unbounded)", rows, link=path))
        b.tables[-1]["collapsed"] = True
    b.notes.append("Disproportionality: a group's share of the events over its share of the benchmark (1 = in"
                   " proportion). Disparity: the group's rate per benchmark member over the reference group's."
                   " Intervals: DP tables by simulating the published noise; suppressed tables by the LP bounds of"
                   " the empty cells; exact tables: the value itself (docs/indices.md).")
    return b


def qi_distribution_block(a: dict[str, Any], files: dict[str, bytes], paths: list[str]) -> Block | None:
    """Before/after view from the published file: each quasi-identifier's published values and their spread."""
    qis = [q for q in a.get("quasi_identifiers") or [] if isinstance(q, str)]
    got = read_table(files, paths)
    if not qis or got is None:
        return None
    path, t = got
    b = Block("Published values of each quasi-identifier")
    for q in qis[:6]:
        if q not in t.columns:
            continue
        vc = t[q].fillna("(suppressed)").value_counts()
        top = vc.head(12)
        title = f"{q}: {len(vc):,} published value(s)" + (f", top {len(top)}" if len(vc) > len(top) else "")
        b.charts.append(charts.bars([str(x) for x in top.index], list(top.to_numpy(dtype=float)), title, "records",
                                    highlight=[str(x) in ("(suppressed)", "*") for x in top.index]))
    loss = a.get("information_loss") or a.get("loss")
    if isinstance(loss, dict):
        rows = [{"quasi-identifier": k, "information loss": v} for k, v in loss.items()]
        b.tables.append(records_table("Information loss per quasi-identifier (0 = as recorded, 1 = fully hidden)",
                                      rows))
    return b
