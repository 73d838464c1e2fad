"""Command-line options of the geomask steps shared by `release run` and `release check`."""

from __future__ import annotations

import re
from typing import Any

from release.errors import UsageError


def geo_options(addresses: str | None, layers: tuple[str, ...]) -> dict[str, Any]:
    """--addresses FILE and --layer NAME=FILE as run options (the names the policy's area layers use)."""
    out: dict[str, Any] = {}
    if addresses:
        out["addresses"] = addresses
    for item in layers:
        m = re.fullmatch(r"([a-z][a-z0-9_-]*)=(.+)", item)
        if not m:
            raise UsageError(f"--layer {item!r}: expected NAME=FILE (e.g. neighbourhoods=hoods.geojson)")
        out[m.group(1)] = m.group(2)
    return out
