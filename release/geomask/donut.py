"""`geomask-donut`: random displacement between two radii, uniform over the annulus's area.

The offsets are keyed per record (release/series/keyed.py): a record's offset is a pseudo-random
function of its registered source, its record id and the donut's radii, so every release and every
dataset drawn from the same source publishes the same point for it (averaging re-releases gains
nothing). Only a policy declaring `series.one_off: true` draws fresh offsets (os.urandom).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from scipy.spatial import cKDTree

from release.context import StepContext
from release.errors import BlockedError, UsageError
from release.geomask.common import (
    PointMaskColumns,
    area_columns,
    coord_columns,
    coordinates,
    geocodable,
    histogram,
    inside_bbox,
    point_stats,
    privacy_unit,
    quantiles,
    set_nsa,
    uniforms,
)
from release.geomask.network import (
    PRECISION,
    NetworkConfig,
    WithinConfig,
    address_points,
    area_changed,
    area_text,
    areas_for,
    file_sha256,
    network_for,
    resolve_path,
)
from release.geomask.projection import projector_for
from release.geomask.snap import node_areas, snap_xy
from release.governance.trusted import trusted_path
from release.policy.base import Schema, StepConfig
from release.registry import register_step
from release.series.config import one_off, secret_of, source_name
from release.series.keyed import keyed_uniforms, mask_key

BOUND_TOLERANCE_M = 0.05
"Rounding published coordinates to 7 decimals moves a point by at most ~1 cm; the bounds check allows 5 cm."


def annulus(u_r: np.ndarray, u_t: np.ndarray, r_min: np.ndarray | float, r_max: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets uniform over the annulus's area: P(r <= s) grows with s**2, hence the square root."""
    r = np.sqrt(u_r * (np.square(r_max) - np.square(r_min)) + np.square(r_min))
    theta = 2.0 * np.pi * u_t
    return r * np.cos(theta), r * np.sin(theta)


def donut_record_ids(frame: pd.DataFrame, ctx: StepContext, step: Any, where: str) -> pd.Series:
    """The record ids masks are keyed by: the input's record id, as read (not yet pseudonymized or dropped)."""
    from release.errors import PolicyError

    rid = ctx.policy.input.record_id
    for s in ctx.policy.steps:
        if s is step:
            break
        if rid in (getattr(s, "columns", None) or ()) and getattr(s, "type", None) in ("pseudonymize", "drop"):
            raise PolicyError(f"{where}: the record id {rid!r} is {s.type}d by an earlier step; keyed masks need"
                              " the record id as read: put the donut step before it")
    if rid not in frame.columns:
        raise PolicyError(f"{where}: the record id {rid!r} is no longer in the records; keyed masks need it")
    return frame[rid]


@register_step
class DonutStep(PointMaskColumns, StepConfig):
    """Displace every point by a random distance in [min_distance, max_distance] in a random direction."""

    type: Literal["geomask-donut"] = "geomask-donut"
    min_distance: float = Field(ge=0)
    "Metres: no point stays closer than this to its true location (defeats 'the point is the home')."
    max_distance: float = Field(gt=0)
    "Metres: the largest displacement in dense places (keeps the map useful)."
    target_k: int | None = Field(default=None, ge=1)
    "Widen the outer radius where needed so at least this many addresses lie within it (spatial k)."
    max_widened: float | None = Field(default=None, gt=0)
    "Metres: the widest outer radius widening may reach (default 5 x max_distance)."
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    "Address points (for target_k) and nodes (for the snap fallback)."
    within: WithinConfig | None = None
    "Keep displaced points inside the record's own area (redrawn, then the fallback)."
    measure_area: WithinConfig | None = None
    "Without `within`: the area whose changes the evidence counts (records displaced out of their area)."
    max_redraws: int = Field(default=20, ge=0, le=1000)
    "Redraws for points displaced out of their area before the fallback applies."
    fallback: Literal["withhold", "snap"] = "withhold"
    "Points still outside their area: coordinates withheld, or snapped to the nearest node of their area."
    area_columns: tuple[str, ...] | None = None
    "Columns set to NSA when a point cannot be published (default: every column with role area)."

    @model_validator(mode="after")
    def _radii(self) -> DonutStep:
        if self.min_distance >= self.max_distance:
            raise ValueError("min_distance must be less than max_distance")
        if self.max_widened is not None and self.max_widened < self.max_distance:
            raise ValueError("max_widened must be at least max_distance")
        return self

    def describe(self) -> str:
        s = f"displace points {self.min_distance:g}-{self.max_distance:g} m at random (donut)"
        if self.target_k:
            s += f", widened to reach {self.target_k} addresses"
        if self.within is not None:
            s += f", kept inside the record's {self.within.column or self.within.areas.layer}"  # type: ignore[union-attr]
        return s

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {"min_distance_m": self.min_distance, "max_distance_m": self.max_distance, "target_k": self.target_k}

    def _draws(self, frame: pd.DataFrame, rows: np.ndarray, r_max: np.ndarray,
               ctx: StepContext) -> Callable[[str, np.ndarray], np.ndarray]:
        """draw(label, idx) -> 2 x len(idx) uniforms (radial shares, then angles) for the donut rows `idx`."""
        if one_off(ctx.policy):
            return lambda label, idx: uniforms(2 * len(idx), ctx, label)
        where = f"geomask-donut ({self.min_distance:g}-{self.max_distance:g} m)"
        secret = secret_of(ctx.policy, ctx.policy_path, where)
        source = source_name(ctx.policy)
        assert source is not None
        ids = donut_record_ids(frame, ctx, self, where).iloc[rows].reset_index(drop=True)
        keys: dict[str, bytes] = {}

        def draw(label: str, idx: np.ndarray) -> np.ndarray:
            # The radii are part of the key: two datasets with other radii draw independent offsets, never the
            # same direction at another distance (two points on one ray would give the true point away).
            purpose = f"geomask-donut:{self.min_distance!r}:{self.max_distance!r}:{label}"
            key = keys.setdefault(purpose, mask_key(secret, source, purpose))
            u = keyed_uniforms(ids.iloc[idx], key, r_max[idx])
            return np.concatenate([u[:, 0], u[:, 1]])

        ctx.manifest.setdefault("masks", {}).update({"per_record": "keyed", "source": source})
        return draw

    def _randomness(self, ctx: StepContext) -> str:
        if not one_off(ctx.policy):
            return (f"keyed per record (source {source_name(ctx.policy)}): a record keeps its point in every release"
                    " and every dataset drawn from that source")
        ctx.manifest.setdefault("masks", {}).update({"per_record": "one-off"})
        seeded = "test-mode seed (SHAKE-256)" if ctx.seed is not None else "os.urandom"
        return f"{seeded}: a declared one-off release (series.one_off); re-releasing these records would undo it"

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        lat_c, lon_c = coord_columns(ctx.schema, "geomask-donut")
        areas = area_columns(ctx.schema, self.area_columns)
        proj = projector_for(ctx.policy.jurisdiction)
        la, lo = coordinates(frame, lat_c, lon_c)
        ok = geocodable(la, lo)
        inside = ok & inside_bbox(la, lo, ctx.policy.jurisdiction.bbox)
        rows = np.flatnonzero(inside)
        n = len(rows)
        x, y = proj.to_metric(lo[rows], la[rows])
        r_max = np.full(n, self.max_distance)
        widened = 0
        if self.target_k is not None:
            addr = trusted_path(ctx.options, "addresses", "addresses",
                                resolve_path(self.network.addresses, "addresses", ctx.options, ctx.policy_path))
            if addr is None:
                raise UsageError("geomask-donut: target_k needs address points (network.addresses or --addresses)")
            ax, ay = address_points(addr, proj)
            k = min(self.target_k, len(ax))
            d, _ = cKDTree(np.column_stack([ax, ay]), balanced_tree=False).query(np.column_stack([x, y]), k=k, workers=-1)
            dk = d if d.ndim == 1 else d[:, -1]
            cap = self.max_widened or 5 * self.max_distance
            need = np.minimum(np.where(np.isfinite(dk), dk, cap), cap)
            widened = int((need > r_max).sum())
            r_max = np.maximum(r_max, need)
            ctx.manifest.setdefault("network", {})["addresses"] = {"file": addr.name, "sha256": file_sha256(addr)}
        draw = self._draws(frame, rows, r_max, ctx)
        u = draw("donut", np.arange(n))
        dx, dy = annulus(u[:n], u[n:], self.min_distance, r_max)
        nx, ny = x + dx, y + dy
        reason = np.full(len(frame), "", dtype=object)
        reason[~ok] = "not-geocoded"
        reason[ok & ~inside] = "outside-jurisdiction"
        withheld = np.zeros(len(frame), dtype=bool)
        fell_back = np.zeros(n, dtype=bool)
        redrawn = 0
        snapped_nodes = None
        if self.within is not None and n:
            layer = areas_for(self.within.areas, ctx.options, ctx.policy_path, proj) if self.within.areas else None
            if self.within.column is not None:
                rec_area = area_text(frame[self.within.column])[rows]
            else:
                assert layer is not None
                rec_area = layer.locate(x, y)
            if layer is None:
                raise UsageError("geomask-donut: within needs an area layer (within.areas) to test displaced points")

            def in_area(px: np.ndarray, py: np.ndarray, want: np.ndarray) -> np.ndarray:
                pi, vals = layer.membership(px, py, 0.0)
                good = np.zeros(len(px), dtype=bool)
                good[pi[vals == want[pi]]] = True
                return good

            bad = ~in_area(nx, ny, rec_area)
            for t in range(self.max_redraws):
                if not bad.any():
                    break
                idx = np.flatnonzero(bad)
                redrawn += len(idx)
                uu = draw(f"donut-redraw-{t}", idx)
                ddx, ddy = annulus(uu[: len(idx)], uu[len(idx):], self.min_distance, r_max[idx])
                nx[idx], ny[idx] = x[idx] + ddx, y[idx] + ddy
                bad[idx] = ~in_area(nx[idx], ny[idx], rec_area[idx])
            fell_back = bad
            if bad.any() and self.fallback == "snap":
                net = network_for(self.network, ctx.options, ctx.policy_path, ctx.policy.jurisdiction, proj)
                idx = np.flatnonzero(bad)
                res = snap_xy(net, x[idx], y[idx], np.ones(len(net), dtype=bool), None, rec_area[idx],
                              node_areas(net, self.within, ctx.options, ctx.policy_path))
                got = res.node >= 0
                nx[idx[got]], ny[idx[got]] = net.x[res.node[got]], net.y[res.node[got]]
                snapped_nodes = (idx[got], res.node[got], net)
                withheld[rows[idx[~got]]] = True
            elif bad.any():
                withheld[rows[bad]] = True
        plon, plat = proj.to_degrees(nx, ny)
        plat, plon = np.round(plat, PRECISION), np.round(plon, PRECISION)
        if snapped_nodes is not None:
            i, node, net = snapped_nodes
            plat[i], plon[i] = np.round(net.lat[node], PRECISION), np.round(net.lon[node], PRECISION)
        # Verify every published displacement from the rounded coordinates, before anything is written.
        qx, qy = proj.to_metric(plon, plat)
        disp = np.hypot(qx - x, qy - y)
        donut_rows = ~fell_back
        lo_ok = disp >= self.min_distance - BOUND_TOLERANCE_M
        hi_ok = disp <= r_max + BOUND_TOLERANCE_M
        broken = donut_rows & ~(lo_ok & hi_ok)
        if broken.any():
            raise BlockedError(f"geomask-donut: {int(broken.sum())} displacement(s) outside"
                               f" [{self.min_distance:g}, {self.max_distance:g}] m (widened up to {r_max.max():.0f} m);"
                               " nothing was published")
        measured = None
        m = self.measure_area
        if self.within is None and m is not None and m.areas is not None and m.column is not None:
            layer_m = areas_for(m.areas, ctx.options, ctx.policy_path, proj)
            measured = area_changed(layer_m, qx, qy, area_text(frame[m.column])[rows], 0.0)
        new_lat = np.full(len(frame), np.nan)
        new_lon = np.full(len(frame), np.nan)
        new_lat[rows], new_lon[rows] = plat, plon
        new_lat[withheld] = np.nan
        new_lon[withheld] = np.nan
        out = frame.copy()
        out[lat_c] = new_lat
        out[lon_c] = new_lon
        nsa = reason != ""
        set_nsa(out, nsa, lat_c, lon_c, areas)
        published = ~withheld[rows]
        return out, {
            "method": "donut",
            "min_distance_m": self.min_distance, "max_distance_m": self.max_distance,
            "target_k": self.target_k, "widened": widened,
            "max_radius_m": round(float(r_max.max()), 2) if n else None,
            "displaced": int((donut_rows & published).sum()),
            "displacement_m": quantiles(disp[donut_rows & published]),
            "displacement_histogram": histogram(disp[donut_rows & published]),
            "bounds_verified": True,
            "redraws": redrawn,
            "fallback": {"method": self.fallback, "count": int(fell_back.sum())} if self.within else None,
            "withheld": int(withheld.sum()),
            "nsa": {"count": int(nsa.sum()),
                    "reasons": {r: int((reason == r).sum()) for r in ("not-geocoded", "outside-jurisdiction")
                                if (reason == r).any()}},
            "area_changed": 0 if self.within is not None else measured,
            "randomness": self._randomness(ctx),
            **point_stats(out, lat_c, lon_c, privacy_unit(ctx.schema, ctx)),
        }
