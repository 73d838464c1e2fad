"""The report's first screen in plain words: what is published, who could be re-identified, what was blurred."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from release.report.view import fmt


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 else "under 0.1%"


def _records(o: dict[str, Any], fig: dict[str, Any]) -> tuple[str, str | None]:
    got = fig.get("anonymity")
    a: dict[str, Any] = got if isinstance(got, dict) else {}
    rows = fig.get("rows")
    what = f"{fmt(rows)} person-level records in {o.get('name')}"
    risk = None
    k = a.get("k")
    if isinstance(k, (int, float)) and k:
        qi = ", ".join(a.get("quasi_identifiers") or []) or "the quasi-identifiers"
        pr = (a.get("risk") or {}).get("prosecutor") if isinstance(a.get("risk"), dict) else None
        high = pr.get("highest") if isinstance(pr, dict) else None
        risk = (f"{o.get('name')}: each record shares its {qi} with at least {int(k) - 1} other(s); someone who"
                f" knows a person is in the file picks their record with probability at most "
                f"{_pct(float(high) if isinstance(high, (int, float)) else 1 / float(k))}.")
    return what, risk


def _dp(o: dict[str, Any], fig: dict[str, Any]) -> tuple[str, str | None]:
    dp = fig["dp"]
    eps = dp.get("epsilon")
    what = f"{fmt(fig.get('rows') or dp.get('cells_published'))} noisy counts in {o.get('name')}"
    budget = f"epsilon {fmt(eps)}" if eps is not None else f"rho {fmt(dp.get('rho'))}"
    risk = (f"{o.get('name')}: every count is noised (± {fmt(dp.get('accuracy_95'))} for 95% of cells; {budget}), so"
            " it cannot confirm that any given person was involved.")
    return what, risk


def _table(o: dict[str, Any], fig: dict[str, Any]) -> tuple[str, str | None]:
    s = fig["suppression"]
    what = f"a table of {fmt(s.get('cells'))} counts with margins in {o.get('name')}"
    sup = s.get("suppressed_cells") or 0
    width = s.get("smallest_interval")
    # With proved intervals (large components) the smallest width is a lower bound of the attacker's best.
    best = "at least" if s.get("proved_intervals") else "at best"
    risk = (f"{o.get('name')}: {fmt(sup)} small cell(s) left empty; an attacker can narrow an empty cell to a range"
            f" {fmt(width) if width is not None else 'without upper bound'} wide {best}." if sup
            else f"{o.get('name')}: no cell small enough to need suppressing.")
    return what, risk


def _indices(o: dict[str, Any], fig: dict[str, Any]) -> tuple[str, str | None]:
    ix = fig["indices"]
    names = ", ".join(str(b.get("name")) for b in ix.get("benchmarks") or [])
    return (f"{fmt(ix.get('rows'))} benchmarking indices by {ix.get('group')} in {o.get('name')} (against {names})",
            None)


def drowned_cells(o: dict[str, Any], files: dict[str, bytes]) -> tuple[int, int]:
    """(cells whose published value is within the noise's 95% bound, cells) of a DP output's main table."""
    acc = ((o.get("figures") or {}).get("dp") or {}).get("accuracy_95")
    path = next((p for p in o.get("files") or [] if p.endswith(".csv")), None)
    if not isinstance(acc, (int, float)) or path is None or path not in files:
        return 0, 0
    try:
        t = pd.read_csv(io.BytesIO(files[path]), dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError):
        return 0, 0
    col = next((c for c in ("count", "noisy_count", "sum", "value") if c in t.columns), None)
    if col is None:
        return 0, 0
    v = pd.to_numeric(t[col], errors="coerce")
    return int((v.dropna() < acc).sum()), int(v.notna().sum())


def first_screen(report: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Plain statements for the top of the page: published, risk, removed/blurred, and warnings."""
    published: list[str] = []
    risks: list[str] = []
    removed: list[str] = []
    warnings: list[str] = []
    val = report.get("validation") or {}
    if val.get("rows_excluded"):
        removed.append(f"{fmt(val['rows_excluded'])} of {fmt(val.get('rows_read'))} input records failed the input"
                       " rules and were left out.")
    for s in report.get("steps") or []:
        n = sum(int(s.get(k) or 0) for k in ("rows_excluded", "rows_removed", "rows_suppressed", "records_suppressed")
                if isinstance(s.get(k), (int, float)))
        if n:
            removed.append(f"step {s.get('type')} removed {fmt(n)} record(s).")
        dropped = s.get("dropped_columns") or s.get("dropped")
        if s.get("type") == "drop" and dropped:
            removed.append(f"columns removed before publication: {fmt(dropped)}.")
    for o in report.get("outputs") or []:
        fig = o.get("figures") or {}
        what, risk = None, None
        if isinstance(fig.get("indices"), dict):
            what, risk = _indices(o, fig)
            u = fig["indices"].get("unbounded") or 0
            if u:
                warnings.append(f"{o.get('name')}: {fmt(u)} index(es) unbounded (denominator drowned or suppressed).")
        elif isinstance(fig.get("dp"), dict):
            what, risk = _dp(o, fig)
            small, cells = drowned_cells(o, files)
            if small:
                warnings.append(f"{o.get('name')}: {fmt(small)} of {fmt(cells)} counts are drowned in their noise"
                                f" (below ± {fmt(fig['dp'].get('accuracy_95'))}): read them as 'few or none'.")
        elif isinstance(fig.get("suppression"), dict):
            what, risk = _table(o, fig)
            sup = fig["suppression"].get("suppressed_cells")
            if sup:
                removed.append(f"{o.get('name')}: {fmt(sup)} of {fmt(fig['suppression'].get('cells'))} cells suppressed.")
        elif o.get("kind") == "records":
            what, risk = _records(o, fig)
        else:
            what = f"{o.get('name')} ({o.get('kind')})"
        loc = fig.get("location") if isinstance(fig.get("location"), dict) else None
        if loc:
            d = loc.get("displacement_m") or {}
            w = loc.get("withheld") or {}
            removed.append(f"{o.get('name')}: locations moved to a shared point ({loc.get('method')}; median"
                           f" {fmt(d.get('median'))} m, 95% within {fmt(d.get('p95'))} m)" +
                           (f"; {fmt(w.get('count'))} withheld." if isinstance(w, dict) and w.get("count") else "."))
        if isinstance(fig.get("anonymity"), dict):
            a = fig["anonymity"]
            for k in ("records_suppressed", "suppressed_records"):
                if a.get(k):
                    removed.append(f"{o.get('name')}: {fmt(a[k])} record(s) suppressed to reach k.")
        if what:
            published.append(what)
        if risk:
            risks.append(risk)
    if not risks:
        risks.append("No published file holds person-level data or counts small enough to single anyone out.")
    n_files = sum(len(o.get("files") or []) for o in report.get("outputs") or [])
    return {"published": published, "risks": risks, "removed": removed or ["Nothing was removed or blurred."],
            "warnings": warnings, "files": n_files}


def group_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings by check: each group with its counts, failures first (shown open), the rest collapsed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        groups.setdefault(str(f.get("check")), []).append(f)
    out = [{"check": k, "items": v, "failed": sum(not f.get("ok") for f in v), "n": len(v)} for k, v in groups.items()]
    return sorted(out, key=lambda g: (-g["failed"], g["check"]))
