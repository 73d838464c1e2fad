"""The report's Series section: the source, the masks, the predecessors used and the joint checks' results."""

from __future__ import annotations

from typing import Any

from release.report.view import Block, fmt, records_table


def series_block(report: dict[str, Any]) -> Block:
    """One block for report.html from report.json's `series` and the outputs' series figures."""
    s = report.get("series") or {}
    b = Block("Series: earlier releases of the same source")
    b.facts.append(("registered source", fmt(s.get("source"))))
    masks = "drawn afresh (a declared one-off release)" if s.get("one_off") else \
        "keyed per record: a record keeps its mask in every release of the source"
    b.facts.append(("per-record masks", masks))
    b.facts.append(("when joined records break k or l", fmt(s.get("joint_policy"))))
    preds = s.get("predecessors") or []
    if preds:
        b.tables.append(records_table("Predecessors used (verified signed bundles of the same source)",
                                      [{"dataset": p.get("dataset"), "release": p.get("release_id"),
                                        "published": p.get("created_utc"),
                                        "shared columns": p.get("shared_columns")} for p in preds]))
    else:
        b.notes.append("No earlier release of this source in the publication folder shares a published column.")
    if s.get("unverified"):
        b.notes.append(f"Bundles that did not verify (not used): {fmt(s['unverified'])}.")
    rows = []
    for o in report.get("outputs") or []:
        fig = (o.get("figures") or {}).get("series")
        if not isinstance(fig, dict):
            continue
        j = fig.get("joint")
        if isinstance(j, dict):
            rows.append({"output": o.get("name"), "check": "joint k-anonymity", "case": j.get("case"),
                         "joined records": j.get("joined"), "joint k": j.get("k"), "result": j.get("statement")})
        c = fig.get("cumulative")
        if isinstance(c, dict):
            rows.append({"output": o.get("name"), "check": "cumulative table audit",
                         "case": f"{len(c.get('earlier') or [])} earlier table(s)",
                         "joint k": None, "joined records": None, "result": c.get("statement")})
    if rows:
        b.tables.append(records_table("Joint checks with the earlier releases", rows))
    return b
