"""Small policies, networks and contexts for the geomask unit tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from release.context import StepContext
from release.geomask.projection import projector_for
from release.policy.models import Policy

BBOX = [-79.64, 43.58, -79.11, 43.86]


def policy(steps: list[dict[str, Any]] | None = None, crs: int | None = 2952, **cols: Any) -> Policy:
    columns = {
        "record_id": {"type": "string", "role": "record-id"},
        "offence": {"type": "string", "role": "quasi-identifier"},
        "hood": {"type": "string", "role": "area"},
        "latitude": {"type": "float", "role": "latitude", "required": False},
        "longitude": {"type": "float", "role": "longitude", "required": False},
        "person": {"type": "string", "role": "privacy-unit"},
        **cols,
    }
    return Policy.model_validate({
        "dataset": {"name": "geo-test", "title": "t", "publisher": "test"},
        "jurisdiction": {"bbox": BBOX, "crs": crs},
        "input": {"record_id": "record_id", "columns": columns},
        "steps": steps or [],
        "outputs": [{"name": "out", "kind": "records", "columns": ["offence", "hood", "latitude", "longitude"]}],
        # Donut offsets are keyed by the registered source and the record id (docs/series.md).
        "series": {"source": "crime-records", "secret_env": "RELEASE_PSEUDONYM_KEY"},
    })


def ctx(pol: Policy, options: dict[str, Any] | None = None, seed: int | None = 1) -> StepContext:
    return StepContext(policy=pol, policy_path=None, schema=dict(pol.input.columns), release_id="t",
                       now=datetime(2025, 1, 1, tzinfo=UTC), seed=seed, options=dict(options or {}))


def grid_network(tmp: Path, n: int = 6, spacing: float = 100.0, counts: np.ndarray | None = None,
                 origin: tuple[float, float] = (-79.40, 43.70)) -> tuple[Path, pd.DataFrame]:
    """An n x n grid of nodes `spacing` metres apart (built in EPSG:2952), written as CSV."""
    proj = projector_for(policy().jurisdiction)
    x0, y0 = proj.to_metric(np.array([origin[0]]), np.array([origin[1]]))
    gx, gy = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing)
    x = x0[0] + gx.ravel()
    y = y0[0] + gy.ravel()
    lon, lat = proj.to_degrees(x, y)
    frame = pd.DataFrame({"node_id": [f"N{i}" for i in range(n * n)], "lat": np.round(lat, 7), "lon": np.round(lon, 7),
                          "address_count": counts if counts is not None else np.full(n * n, 10)})
    path = tmp / "nodes.csv"
    frame.to_csv(path, index=False)
    return path, frame


def square_layer(tmp: Path, boxes: dict[str, tuple[float, float, float, float]], prop: str = "code") -> Path:
    """Polygon layer of lon/lat boxes keyed by area value."""
    feats = [{"type": "Feature", "properties": {prop: k},
              "geometry": {"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}}
             for k, (a, b, c, d) in boxes.items()]
    p = tmp / "areas.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return p


def records(lat: np.ndarray, lon: np.ndarray, hood: list[str] | None = None, offence: list[str] | None = None) -> pd.DataFrame:
    n = len(lat)
    return pd.DataFrame({
        "record_id": [f"R{i}" for i in range(n)],
        "offence": offence or ["Theft"] * n,
        "hood": pd.Series(hood or ["A"] * n, dtype="string"),
        "latitude": np.asarray(lat, dtype=float),
        "longitude": np.asarray(lon, dtype=float),
        "person": [f"P{i % 3}" for i in range(n)],
    })
