"""The identifier scan as an assessor of every output kind: a hit blocks unless the policy waives it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from release import registry
from release.context import AssessContext
from release.outputs.identifiers import scan_frame


def identifier_scan(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """ASSESSORS hook: scan every value of every published string column (run and `release check`)."""
    gate = actx.policy.gate
    if not gate.scan_identifiers:
        return {}
    waivers = {c: tuple(w) for c, w in gate.identifier_scan_waivers.items()}
    found: dict[str, list[str]] = {}
    for stem, t in tables.items():
        hits = scan_frame(t, waivers)
        for col, h in hits.items():
            found.setdefault(col, [])
            found[col] = sorted(set(found[col]) | set(h))
        waived = [f"{c}: {'/'.join(w)}" for c, w in sorted(waivers.items()) if c in t.columns]
        if not hits:
            msg = "no identifier in any published string column" + (f" (waived: {'; '.join(waived)})" if waived else "")
        else:
            msg = ("identifiers found (distinct values per check): "
                   + "; ".join(f"{c}: " + ", ".join(f"{k} {n}" for k, n in sorted(h.items())) for c, h in hits.items())
                   + " (a check is waived for a column only by the approved policy: gate.identifier_scan_waivers)")
        actx.finding("identifier-scan", not hits, msg, file=actx.files.get(stem))
    return {"identifier_scan": found,
            "identifier_scan_waived": {c: list(w) for c, w in waivers.items()}}


# Listed after every output plug-in in registry.PLUGINS, so every output kind is known here.
for _kind in list(registry.OUTPUTS):
    registry.add_hook(registry.ASSESSORS.setdefault(_kind, []), identifier_scan)
