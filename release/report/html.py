"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from release.io.stream import file_size
from release.report import charts
from release.report.summary import first_screen, group_findings
from release.report.view import (
    Block,
    anonymity_block,
    budget_block,
    dp_block,
    fallback_chart,
    fmt,
    generic_block,
    indices_block,
    kv_facts,
    label,
    location_block,
    qi_distribution_block,
    records_table,
    reidentification_block,
    suppression_block,
)

# Nothing may load: no script, no font, no image from anywhere; inline CSS and data: images only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)

KNOWN_FIGURES = {"rows", "columns", "identifier_scan", "anonymity", "reidentification", "location", "dp",
                 "suppression", "indices"}
ROW_KEYS = ("rows_excluded", "rows_removed", "rows_suppressed", "records_suppressed", "suppressed_records")


def _pipeline(report: dict[str, Any]) -> Block:
    """Records through the pipeline: read, valid, after each step that removed rows, published per output."""
    b = Block("What was removed before publication")
    val = report.get("validation") or {}
    labels: list[str] = []
    values: list[float] = []
    n = val.get("rows_read")
    if isinstance(n, int):
        labels.append("records read")
        values.append(n)
        excl = val.get("rows_excluded") or 0
        if excl:
            n -= excl
            labels.append("valid records")
            values.append(n)
    rows: list[dict[str, Any]] = []
    for s in report.get("steps") or []:
        removed = sum(int(s.get(k) or 0) for k in ROW_KEYS if isinstance(s.get(k), (int, float)))
        detail = {k: v for k, v in s.items() if k not in ("index", "type", "seconds", "fairness")}
        fair = s.get("fairness")
        if isinstance(fair, dict) and isinstance(fair.get("groups"), list) and fair["groups"]:
            b.tables.append(records_table(
                f"Step {s.get('index', len(rows)) + 1}: share of each group suppressed and published at full detail"
                f" (bands; {fmt(fair.get('overall_suppressed'))} overall"
                + ("" if "caps_held" not in fair else
                   f"; caps {'held' if fair['caps_held'] else 'BROKEN'}") + ")", fair["groups"]))
        rows.append({"step": f"{s.get('index', len(rows)) + 1}. {s.get('type')}",
                     "what it did": fmt(detail)})
        if removed and isinstance(n, int):
            n -= removed
            labels.append(f"after {s.get('type')} (−{removed:,})")
            values.append(n)
    for o in report.get("outputs") or []:
        r = (o.get("figures") or {}).get("rows")
        if isinstance(r, int) and o.get("kind") == "records":
            labels.append(f"published in {o['name']}")
            values.append(r)
    if values:
        b.charts.append(charts.bars(labels, values, "Records through the pipeline", "records"))
    if val:
        b.facts.extend(kv_facts({k: v for k, v in val.items() if k != "violations"}))
        if val.get("violations"):
            b.tables.append(records_table("Input rules broken (rows excluded)", val["violations"]))
    if rows:
        b.tables.append(records_table("Steps, in order", rows))
    return b


def _output_section(o: dict[str, Any], files: dict[str, bytes], areas: dict[str, Any] | None,
                    gate: dict[str, Any], budget: Any, sizes: dict[str, int]) -> dict[str, Any]:
    fig = o.get("figures") or {}
    paths = list(o.get("files") or [])
    blocks: list[Block] = []
    pub = Block("What was published")
    pub.facts.append(("kind", o.get("kind", "?")))
    for k in ("rows", "cells"):
        if k in fig:
            pub.facts.append((k, fmt(fig[k])))
    if fig.get("columns"):
        pub.facts.append(("columns", fmt(fig["columns"])))
    pub.tables.append(records_table("Files", [{"file": p, "bytes": sizes.get(p)} for p in paths]))
    if "identifier_scan" in fig:
        hits = fig["identifier_scan"] or {}
        pub.facts.append(("identifier scan", "no identifier patterns" if not hits else fmt(hits)))
    blocks.append(pub)
    if isinstance(fig.get("reidentification"), dict):
        blocks.append(reidentification_block(fig["reidentification"]))
    if isinstance(fig.get("anonymity"), dict):
        blocks.append(anonymity_block(fig["anonymity"], gate))
        qi = qi_distribution_block(fig["anonymity"], files, paths)
        if qi is not None:
            blocks.append(qi)
    if isinstance(fig.get("location"), dict) or any(p.endswith(".geojson") for p in paths):
        blocks.append(location_block(fig.get("location"), files, paths, areas, gate))
    if isinstance(fig.get("dp"), dict):
        blocks.append(dp_block(fig["dp"], files, paths, budget))
    if isinstance(fig.get("suppression"), dict):
        blocks.append(suppression_block(fig["suppression"], files, paths, gate))
    if isinstance(fig.get("indices"), dict):
        blocks.append(indices_block(fig["indices"], files, paths))
    for k, v in fig.items():
        if k not in KNOWN_FIGURES:
            blocks.append(generic_block(label(k), v))
    if not any(b.charts for b in blocks):
        c = fallback_chart(files, paths, o.get("name", ""))
        if c:
            pub.charts.append(c)
    findings = o.get("findings") or []
    return {"name": o.get("name", "?"), "kind": o.get("kind", "?"), "description": o.get("description"),
            "blocks": blocks, "findings": findings, "failed": sum(not f.get("ok") for f in findings)}


def first_screen_notices(report: dict[str, Any]) -> list[str]:
    """What a reader must see before the details: records the public can single out, DP tables that are
    mostly noise, groups a cap did not hold for."""
    out: list[str] = []
    for o in report.get("outputs") or []:
        fig = o.get("figures") or {}
        name = o.get("name", "?")
        pub = fig.get("reidentification") if isinstance(fig.get("reidentification"), dict) else None
        if pub and pub.get("statement"):
            out.append(f"{name}: {pub['statement']}")
        dp = fig.get("dp")
        if isinstance(dp, dict) and dp.get("warning"):
            out.append(f"{name}: {dp['warning']}")
    for s in report.get("steps") or []:
        fair = s.get("fairness") if isinstance(s, dict) else None
        if isinstance(fair, dict) and fair.get("statement"):
            out.append(str(fair["statement"]))
    return out


def build_page(report: dict[str, Any], files: dict[str, bytes], *, areas: dict[str, Any] | None = None,
               approval: dict[str, Any] | None = None, versions: dict[str, str] | None = None,
               internal: dict[str, Any] | None = None) -> str:
    """The report as HTML. With `internal`, an internal diagnostics section is added (never published)."""
    gate = report.get("gate") or {}
    budget = report.get("budget")
    approval = approval if approval is not None else report.get("approval")
    sizes = {p: file_size(files, p) for p in files}
    findings = report.get("findings") or []
    failed = [f for f in findings if not f.get("ok")]
    outputs = []
    for o in report.get("outputs") or []:
        try:
            outputs.append(_output_section(o, files, areas, gate, budget, sizes))
        except Exception as e:  # noqa: BLE001 - one odd figure must not cost the whole report
            outputs.append({"name": o.get("name", "?"), "kind": o.get("kind", "?"), "description": None,
                            "blocks": [generic_block("Figures", o.get("figures") or {}),
                                       Block("Rendering problem", notes=[f"{type(e).__name__}: {e}"])],
                            "findings": o.get("findings") or [],
                            "failed": sum(not f.get("ok") for f in o.get("findings") or [])})
    notices = first_screen_notices(report)
    release_blocks = [_pipeline(report)]
    if budget:
        release_blocks.append(budget_block(budget))
    if report.get("series"):
        from release.series.report import series_block

        release_blocks.append(series_block(report))
    if gate:
        release_blocks.append(Block("Thresholds set by the policy", facts=kv_facts(gate)))
    internal_blocks = []
    if internal is not None:
        for k, v in internal.items():
            if k == "outputs" and isinstance(v, dict):
                for name, d in v.items():
                    internal_blocks.append(generic_block(f"output {name}", d if isinstance(d, dict) else {"value": d}))
            else:
                internal_blocks.append(generic_block(label(k), v if isinstance(v, dict) else {"value": v}))
        if not internal_blocks:
            internal_blocks.append(Block("No internal diagnostics were recorded for this release"))
    summary = first_screen(report, files)
    return _ENV.get_template("report.html.j2").render(
        csp=CSP, r=report, verdict=report.get("verdict", "?"), findings=findings, failed=failed,
        summary=summary, finding_groups=group_findings(findings), notices=notices,
        outputs=outputs, release_blocks=release_blocks, approval=approval, versions=versions or {},
        internal=internal is not None, internal_blocks=internal_blocks)
