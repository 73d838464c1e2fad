"""`geomask-snap`: move each point to the nearest eligible intersection node (TPS, police.uk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.spatial import cKDTree

from release.batches import Deferred, counted, finish_evidence
from release.context import StepContext
from release.geomask.common import (
    PointMaskColumns,
    area_columns,
    coord_columns,
    coordinates,
    geocodable,
    histogram,
    inside_bbox,
    point_stats_deferred,
    privacy_unit,
    quantiles,
    set_nsa,
)
from release.geomask.network import (
    PRECISION,
    Network,
    NetworkConfig,
    WithinConfig,
    area_changed,
    area_text,
    areas_for,
    network_for,
)
from release.geomask.projection import projector_for
from release.policy.base import Schema, StepConfig
from release.registry import register_step

REASONS = ("not-geocoded", "outside-jurisdiction", "outside-areas", "no-eligible-node-in-area", "beyond-max-distance")


def node_areas(net: Network, within: WithinConfig, options: dict[str, Any], policy_path: Any) -> tuple[np.ndarray, np.ndarray]:
    """(node index, area value) pairs; a node on a boundary street is listed once per area it serves."""
    if within.node_column is not None:
        if within.node_column not in net.attrs:
            from release.errors import InputError

            raise InputError(f"network file {net.manifest['file']}: no node column {within.node_column!r}"
                             " (named by within.node_column)")
        vals = area_text(pd.Series(net.attrs[within.node_column]))
        have = np.array([v is not None for v in vals], dtype=bool)
        return np.flatnonzero(have), vals[have]
    assert within.areas is not None
    layer = areas_for(within.areas, options, policy_path, net.projector)
    key = ("membership", layer.manifest["sha256"], within.tolerance)
    if key not in net.cache:
        net.cache[key] = layer.membership(net.x, net.y, within.tolerance)
    return net.cache[key]


@dataclass
class SnapResult:
    """Per point: the node it snaps to (-1: none), the distance in metres, and why not when none."""

    node: np.ndarray
    distance: np.ndarray
    reason: np.ndarray


def snap_xy(net: Network, x: np.ndarray, y: np.ndarray, eligible: np.ndarray, max_distance: float | None,
            record_area: np.ndarray | None = None, pairs: tuple[np.ndarray, np.ndarray] | None = None,
            cache_key: Any = None) -> SnapResult:
    """Nearest eligible node per projected point; with areas, only nodes of the point's own area.

    With areas, records are grouped by area and each group queries its area's KD-tree: one
    vectorized query per area, never a loop over records.
    """
    n = len(x)
    node = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    reason = np.full(n, "", dtype=object)
    ub = np.inf if max_distance is None else float(max_distance)
    pts = np.column_stack([x, y])
    if record_area is None:
        idx = np.flatnonzero(eligible)
        if len(idx) == 0:
            reason[:] = "no-eligible-node-in-area"
            return SnapResult(node, dist, reason)
        key = ("tree", cache_key)
        tree = net.cache.get(key) if cache_key is not None else None
        if tree is None:
            tree = net.tree() if len(idx) == len(net) else cKDTree(pts_of(net, idx), balanced_tree=False,
                                                                     compact_nodes=True)
            if cache_key is not None:
                net.cache[key] = tree
        d, i = query(tree, pts, ub)
        ok = np.isfinite(d)
        node[ok] = idx[i[ok]]
        dist[ok] = d[ok]
        reason[~ok] = "beyond-max-distance"
        return SnapResult(node, dist, reason)
    assert pairs is not None
    p_node, p_area = pairs
    keep = eligible[p_node]
    p_node, p_area = p_node[keep], p_area[keep]
    codes, uniq = pd.factorize(pd.Series(np.concatenate([p_area, record_area]), dtype="string"), use_na_sentinel=True)
    node_code = codes[: len(p_area)]
    rec_code = codes[len(p_area):]
    reason[rec_code < 0] = "outside-areas"
    order = np.argsort(node_code, kind="stable")
    nc_sorted = node_code[order]
    bounds = np.searchsorted(nc_sorted, np.arange(len(uniq) + 1))
    rec_order = np.argsort(rec_code, kind="stable")
    rc_sorted = rec_code[rec_order]
    rbounds = np.searchsorted(rc_sorted, np.arange(len(uniq) + 1))
    for a in range(len(uniq)):
        rows = rec_order[rbounds[a]:rbounds[a + 1]]
        if len(rows) == 0:
            continue
        members = p_node[order[bounds[a]:bounds[a + 1]]]
        if len(members) == 0:
            reason[rows] = "no-eligible-node-in-area"
            continue
        akey = ("area-tree", cache_key, uniq[a])
        tree = net.cache.get(akey) if cache_key is not None else None
        if tree is None:
            tree = cKDTree(pts_of(net, members), balanced_tree=False, compact_nodes=True)
            if cache_key is not None:
                net.cache[akey] = tree
        d, i = query(tree, pts[rows], ub)
        ok = np.isfinite(d)
        node[rows[ok]] = members[i[ok]]
        dist[rows[ok]] = d[ok]
        reason[rows[~ok]] = "beyond-max-distance"
    return SnapResult(node, dist, reason)


def _spread(v: np.ndarray) -> np.ndarray:
    """Interleave zeros between the low 16 bits (the Morton / Z-order bit trick)."""
    v = v.astype(np.uint64) & np.uint64(0xFFFF)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def query(tree: cKDTree, pts: np.ndarray, ub: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour of each point; large batches are queried in Z-order.

    Consecutive queries then walk the same tree branches, which keeps them in the CPU cache:
    on 1M points this costs less than it saves.
    """
    if len(pts) < 20_000:
        return tree.query(pts, distance_upper_bound=ub, workers=-1)
    lo = pts.min(axis=0)
    cell = np.maximum((pts.max(axis=0) - lo) / 65535.0, 1e-9)
    g = ((pts - lo) / cell).astype(np.int64)
    order = np.argsort(_spread(g[:, 0]) | (_spread(g[:, 1]) << np.uint64(1)))
    d, i = tree.query(pts[order], distance_upper_bound=ub, workers=-1)
    dist = np.empty_like(d)
    idx = np.empty_like(i)
    dist[order] = d
    idx[order] = i
    return dist, idx


def pts_of(net: Network, idx: np.ndarray) -> np.ndarray:
    return np.column_stack([net.x[idx], net.y[idx]])


def address_figures(counts: np.ndarray | None, used_nodes: np.ndarray) -> dict[str, Any]:
    """Address count of the nodes records were published at (min), and the share of records below 5/25/50."""
    if counts is None or len(used_nodes) == 0:
        return {}
    c = counts[used_nodes]
    return {"min_addresses_per_node": int(np.unique(c).min()),
            "share_records_below": {str(t): round(float((c < t).mean()), 4) for t in (5, 25, 50)}}


def address_figures_of(counts_used: np.ndarray) -> dict[str, Any]:
    """address_figures from the address counts of the nodes used (none when the network has no counts)."""
    return address_figures(counts_used, np.arange(len(counts_used)))


def reason_counts(counts: np.ndarray) -> dict[str, int]:
    """The NSA reasons that occurred, in REASONS order, with their counts."""
    return {r: int(c) for r, c in zip(REASONS, counts, strict=True) if c}


@register_step
class SnapStep(PointMaskColumns, StepConfig):
    """Offset every point to the nearest eligible road intersection node."""

    type: Literal["geomask-snap"] = "geomask-snap"
    row_local: ClassVar[bool] = True
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    "The street network whose intersection nodes points are snapped to."
    min_addresses: int | None = Field(default=None, ge=1)
    "A node serving fewer addresses is never used: it would point at one home (police.uk uses 8)."
    within: WithinConfig | None = None
    "Snap only to nodes in the record's own area, so published area counts are not changed by the snap."
    measure_area: WithinConfig | None = None
    "Without `within`: the area whose changes the evidence counts (records snapped out of their area)."
    max_distance: float | None = Field(default=None, gt=0)
    "Metres: a point farther than this from every eligible node loses its coordinates (area NSA)."
    area_columns: tuple[str, ...] | None = None
    "Columns set to NSA when a point cannot be published (default: every column with role area)."

    def describe(self) -> str:
        parts = ["snap points to the nearest intersection node"]
        if self.min_addresses:
            parts.append(f"serving at least {self.min_addresses} addresses")
        if self.within is not None:
            parts.append(f"within the record's own {self.within.column or self.within.areas.layer}")  # type: ignore[union-attr]
        if self.max_distance:
            parts.append(f"at most {self.max_distance:g} m away")
        return ", ".join(parts)

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {"min_addresses": self.min_addresses, "max_distance_m": self.max_distance,
                "within": self.within.model_dump(exclude_none=True) if self.within else None}

    def _measured(self, ctx: StepContext, frame: pd.DataFrame, rows: np.ndarray, res: SnapResult,
                  net: Network) -> int | None:
        m = self.measure_area
        if m is None or m.areas is None or m.column is None:
            return None
        layer = areas_for(m.areas, ctx.options, ctx.policy_path, net.projector)
        got = res.node >= 0
        rec = area_text(frame[m.column])[rows[got]]
        return area_changed(layer, net.x[res.node[got]], net.y[res.node[got]], rec, m.tolerance)

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out, ev = self.apply_batch(frame, ctx)
        return out, finish_evidence(ev)

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        lat_c, lon_c = coord_columns(ctx.schema, "geomask-snap")
        areas = area_columns(ctx.schema, self.area_columns)
        proj = projector_for(ctx.policy.jurisdiction)
        net = network_for(self.network, ctx.options, ctx.policy_path, ctx.policy.jurisdiction, proj)
        eligible = net.eligible(self.min_addresses)
        la, lo = coordinates(frame, lat_c, lon_c)
        ok = geocodable(la, lo)
        inside = ok & inside_bbox(la, lo, ctx.policy.jurisdiction.bbox)
        rows = np.flatnonzero(inside)
        x, y = proj.to_metric(lo[rows], la[rows])
        record_area = pairs = None
        layer_manifest = None
        if self.within is not None:
            pairs = node_areas(net, self.within, ctx.options, ctx.policy_path)
            if self.within.areas is not None:
                layer = areas_for(self.within.areas, ctx.options, ctx.policy_path, proj)
                layer_manifest = layer.manifest
            if self.within.column is not None:
                record_area = area_text(frame[self.within.column])[rows]
            else:
                record_area = layer.locate(x, y)
        res = snap_xy(net, x, y, eligible, self.max_distance, record_area, pairs,
                      cache_key=(self.min_addresses, self.within, (layer_manifest or {}).get("sha256")))
        reason = np.full(len(frame), "", dtype=object)
        reason[~ok] = "not-geocoded"
        reason[ok & ~inside] = "outside-jurisdiction"
        reason[rows] = res.reason
        snapped = rows[res.node >= 0]
        used = res.node[res.node >= 0]
        new_lat = np.full(len(frame), np.nan)
        new_lon = np.full(len(frame), np.nan)
        new_lat[snapped] = np.round(net.lat[used], PRECISION)
        new_lon[snapped] = np.round(net.lon[used], PRECISION)
        out = frame.copy()
        out[lat_c] = new_lat
        out[lon_c] = new_lon
        nsa = reason != ""
        set_nsa(out, nsa, lat_c, lon_c, areas)
        ctx.manifest["network"] = {**net.manifest, **({"areas": layer_manifest} if layer_manifest else {})}
        evidence: dict[str, Any] = {
            "method": "snap",
            "network": {"nodes": len(net), "eligible_nodes": int(eligible.sum()), "crs": proj.name,
                        "sha256": net.manifest["sha256"],
                        "address_counts": "addresses file" if "addresses" in net.manifest else
                        ("nodes file" if net.counts is not None else "unknown")},
            "min_addresses": self.min_addresses,
            "max_distance_m": self.max_distance,
            "within": (self.within.column or self.within.areas.layer) if self.within else None,  # type: ignore[union-attr]
            "snapped": counted(len(snapped)),
            # Figures of the whole input (quantiles, distinct points) merge across batches, then finish.
            "displacement_m": Deferred(res.distance[res.node >= 0], quantiles),
            "displacement_histogram": Deferred(res.distance[res.node >= 0], histogram),
            "nsa": {"count": counted(int(nsa.sum())),
                    "reasons": Deferred(np.array([int((reason == r).sum()) for r in REASONS]), reason_counts,
                                        np.add)},
            # Within an area by construction; counted so the report can show it is zero.
            "area_changed": counted(0 if self.within is not None else self._measured(ctx, frame, rows, res, net)),
            "**addresses": Deferred(np.zeros(0, dtype=np.int64) if net.counts is None else net.counts[used],
                                   address_figures_of),
            "**points": point_stats_deferred(out, lat_c, lon_c, privacy_unit(ctx.schema, ctx)),
        }
        return out, evidence
