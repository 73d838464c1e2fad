"""Helpers shared by the geomask steps: coordinate columns, NSA handling, secure uniforms, figures."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from release.context import StepContext, test_mode
from release.errors import InternalError
from release.policy.base import ColumnSpec, ColumnType, Role, Schema

NSA = "NSA"
"TPS's 'not specified area': the area value of rows whose location could not be published."


def coord_columns(schema: Schema, where: str) -> tuple[str, str]:
    lat = next((c for c, s in schema.items() if s.role == Role.latitude), None)
    lon = next((c for c, s in schema.items() if s.role == Role.longitude), None)
    if lat is None or lon is None:
        # ValueError: the plan check reports it with the policy file, line and step path.
        raise ValueError(f"{where}: the schema has no latitude/longitude columns to mask")
    return lat, lon


def area_columns(schema: Schema, declared: tuple[str, ...] | None) -> list[str]:
    if declared is not None:
        return list(declared)
    return [c for c, s in schema.items() if s.role == Role.area]


def schema_with_text_areas(schema: Schema, areas: list[str]) -> Schema:
    """Area columns become text: they may now hold 'NSA' as TPS publishes it."""
    out = dict(schema)
    for c in areas:
        spec = out.get(c)
        if spec is None:
            continue
        cats = spec.categories
        if spec.type not in (ColumnType.string, ColumnType.category):
            out[c] = ColumnSpec(**{**spec.model_dump(exclude={"type", "categories"}), "type": ColumnType.string})
        elif cats is not None and NSA not in cats:
            out[c] = spec.model_copy(update={"categories": (*cats, NSA)})
    return out


def set_nsa(frame: pd.DataFrame, rows: np.ndarray, lat: str, lon: str, areas: list[str]) -> None:
    """Remove the coordinates of `rows` and set their area columns to NSA (in place)."""
    if not rows.any():
        return
    frame.loc[rows, lat] = np.nan
    frame.loc[rows, lon] = np.nan
    for c in areas:
        if c in frame.columns:
            if not (pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object):
                frame[c] = frame[c].astype("string")
            frame.loc[rows, c] = NSA


def coordinates(frame: pd.DataFrame, lat: str, lon: str) -> tuple[np.ndarray, np.ndarray]:
    la = frame[lat].to_numpy(dtype=np.float64, na_value=np.nan)
    lo = frame[lon].to_numpy(dtype=np.float64, na_value=np.nan)
    return la, lo


def geocodable(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Rows with a usable point: not null and not the 0,0 'not geocoded' marker."""
    return ~np.isnan(lat) & ~np.isnan(lon) & ~((lat == 0) & (lon == 0))


def inside_bbox(lat: np.ndarray, lon: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    min_lon, min_lat, max_lon, max_lat = bbox
    return (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon)


def uniforms(n: int, ctx: StepContext, label: str) -> np.ndarray:
    """n uniform floats in [0, 1) from the OS's secure source; a fixed stream only in test mode.

    Each float takes the top 53 bits of a 64-bit word, so every value is an exact multiple of
    2**-53 (no rounding bias). In test mode with a seed, the words come from SHAKE-256 of the
    seed, the release id is left out so a test run is reproducible.
    """
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    nbytes = 8 * n
    if ctx.seed is not None:
        if not test_mode():
            raise InternalError("a seed reached a geomask step outside test mode (this is a bug)")
        raw = hashlib.shake_256(f"release-geomask:{ctx.seed}:{label}".encode()).digest(nbytes)
    else:
        raw = os.urandom(nbytes)
    words = np.frombuffer(raw, dtype=np.uint64)
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def quantiles(d: np.ndarray) -> dict[str, float] | None:
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return None
    q = np.quantile(d, [0.0, 0.5, 0.95, 1.0])
    return {"min": round(float(q[0]), 2), "median": round(float(q[1]), 2), "p95": round(float(q[2]), 2),
            "max": round(float(q[3]), 2)}


HIST_EDGES_M = (0, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000)


def histogram(d: np.ndarray) -> dict[str, list[float]] | None:
    """Displacements binned at fixed edges (metres; the last bin holds everything beyond 5 km)."""
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return None
    edges = np.array([*HIST_EDGES_M, max(float(d.max()), HIST_EDGES_M[-1]) + 1.0])
    counts, _ = np.histogram(d, bins=edges)
    return {"edges_m": [float(e) for e in HIST_EDGES_M], "counts": [int(c) for c in counts]}


def point_stats(frame: pd.DataFrame, lat: str, lon: str, unit: str | None) -> dict[str, Any]:
    """Distinct points, records and privacy units per point, over rows that keep coordinates."""
    return point_stats_finish(point_stats_state(frame, lat, lon, unit))


def point_stats_state(frame: pd.DataFrame, lat: str, lon: str, unit: str | None) -> pd.DataFrame:
    """What point_stats needs of one batch: the point key per row with coordinates, and its privacy unit."""
    from release.geomask.network import coord_keys

    la, lo = coordinates(frame, lat, lon)
    have = ~np.isnan(la) & ~np.isnan(lo)
    state = pd.DataFrame({"k": coord_keys(la[have], lo[have])})
    if unit is not None and unit in frame.columns:
        state["u"] = frame[unit].to_numpy()[have]
    return state


def point_stats_finish(state: pd.DataFrame) -> dict[str, Any]:
    keys = state["k"].to_numpy()
    out: dict[str, Any] = {"distinct_points": 0}
    if len(keys) == 0:
        return out
    _, per = np.unique(keys, return_counts=True)
    out["distinct_points"] = int(len(per))
    out["records_per_point"] = {"min": int(per.min()), "median": float(np.median(per))}
    if "u" in state.columns:
        pair = state.dropna().drop_duplicates()
        units = pair.groupby("k").size().to_numpy()
        if len(units):
            out["units_per_point"] = {"min": int(units.min()), "median": float(np.median(units))}
    return out


def point_stats_deferred(frame: pd.DataFrame, lat: str, lon: str, unit: str | None) -> Any:
    """point_stats as a figure that merges across batches (release.batches.Deferred)."""
    from release.batches import Deferred

    return Deferred(point_stats_state(frame, lat, lon, unit), point_stats_finish)


def privacy_unit(schema: Schema, ctx: StepContext) -> str | None:
    if ctx.policy.budget is not None and ctx.policy.budget.privacy_unit in schema:
        return str(ctx.policy.budget.privacy_unit)
    return next((c for c, s in schema.items() if s.role == Role.privacy_unit), None)


class PointMaskColumns:
    """Columns a point mask (snap, donut) reads and rewrites: its area settings and the coordinates.

    Mixed into the step configs, which declare `type`, `within`, `measure_area` and `area_columns`.
    """

    def referenced_columns(self) -> list[str]:
        cols = list(self.area_columns or ())  # type: ignore[attr-defined]
        for w in (self.within, self.measure_area):  # type: ignore[attr-defined]
            if w is not None and w.column is not None:
                cols.append(w.column)
        return cols

    def schema_after(self, schema: Schema) -> Schema:
        coord_columns(schema, self.type)  # type: ignore[attr-defined]
        return schema_with_text_areas(schema, area_columns(schema, self.area_columns))  # type: ignore[attr-defined]
