"""Location figures of record outputs and the snap proof `release check` runs from bundle + network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from release.context import AssessContext
from release.errors import ReleaseError
from release.geomask.common import NSA, point_stats
from release.geomask.network import (
    Network,
    area_text,
    areas_for,
    coord_keys,
    file_sha256,
    load_network,
)
from release.geomask.projection import projector_for
from release.geomask.snap import address_figures, node_areas
from release.governance.trusted import trusted_path
from release.policy.base import Role
from release.registry import register_assessor

MASK_STEPS = {"geomask-snap": "snap", "geomask-donut": "donut", "geomask-area": "area"}
GEO_STEPS = (*MASK_STEPS, "withhold-location")


def _rows(mask: np.ndarray, limit: int = 10) -> str:
    r = np.flatnonzero(mask) + 1
    return ", ".join(str(int(v)) for v in r[:limit]) + (f" and {len(r) - limit} more" if len(r) > limit else "")


def _published_coords(policy: Any, table: pd.DataFrame) -> tuple[str, str] | None:
    lat = next((c for c in policy.input.role_columns(Role.latitude) if c in table.columns), None)
    lon = next((c for c in policy.input.role_columns(Role.longitude) if c in table.columns), None)
    return (lat, lon) if lat and lon else None


def _manifest(actx: AssessContext) -> dict[str, Any]:
    return actx.manifest if actx.run is None else actx.run.manifest


def _evidence(actx: AssessContext) -> dict[int, dict[str, Any]]:
    if actx.run is None:
        return {}
    return {int(e["index"]): e for e in actx.run.step_evidence if "index" in e}


def _network_for_check(step: Any, actx: AssessContext) -> tuple[Network | None, str]:
    """The network the bundle was snapped to: the check's option, else the path the manifest recorded."""
    manifest = actx.manifest if actx.run is None else actx.run.manifest
    rec = manifest.get("network") or {}
    if not rec.get("sha256"):
        return None, "the manifest records no network sha256"
    # The verifier supplies the network (option or release.toml [files]); the bundle names it only by hash.
    given = actx.options.get("network") or actx.options.get("streets")
    path = Path(given) if given else None
    if path is None or not path.is_file():
        return None, (f"network {rec.get('file', '')} (sha256 {rec['sha256'][:12]}…) not available: give it with"
                      " `--network FILE` or release.toml [files] network")
    name = "streets" if rec.get("source") == "streets" else "network"
    path = trusted_path(actx.options, name, name, path) or path  # during a run: the bytes the run read
    got = file_sha256(path)
    if got != rec["sha256"]:
        return None, (f"network file {path}: sha256 {got[:12]}… differs from the manifest's {rec['sha256'][:12]}…"
                      " (not the network this bundle was snapped to)")
    addr = None
    arec = rec.get("addresses")
    if isinstance(arec, dict) and arec.get("sha256"):
        given_a = actx.options.get("addresses")
        addr = Path(given_a) if given_a else None
        if addr is None or not addr.is_file():
            return None, (f"address file {arec.get('file', '')} not available (needed for the address counts per"
                          " node): give it with `--addresses FILE` or release.toml [files] addresses")
        addr = trusted_path(actx.options, "addresses", "addresses", addr) or addr
        if file_sha256(addr) != arec["sha256"]:
            return None, f"address file {addr}: sha256 differs from the manifest's"
    proj = projector_for(actx.policy.jurisdiction)
    streets = rec.get("source") == "streets"
    try:
        net = load_network(None if streets else path, path if streets else None, addr, step.network,
                           actx.policy.jurisdiction, proj)
    except ReleaseError as e:
        return None, f"network file {path}: {e.message}"
    return net, path.name


def _published_views(actx: AssessContext, stem: str, csv: pd.DataFrame, lat: str, lon: str) -> list[tuple[str, pd.DataFrame]]:
    """Every published file holding the points: the CSV read by the core, plus Parquet and GeoJSON.

    The check proves each file, so a point moved in any one of them fails even re-hashed.
    """
    views = [(actx.files.get(stem, f"{stem}.csv"), csv)]
    b = actx.bundle_dir
    if b is None:
        return views  # during the run every format is built from the same frame
    pq = b / f"{stem}.parquet"
    if pq.is_file():
        try:
            views.append((pq.name, pd.read_parquet(pq)))
        except (OSError, ValueError) as e:
            actx.finding("snap-points", False, f"{pq.name}: unreadable ({type(e).__name__})", file=pq.name)
    gj = b / f"{stem}.geojson"
    if gj.is_file():
        try:
            feats = json.loads(gj.read_text(encoding="utf-8"))["features"]
            coords = np.array([f["geometry"]["coordinates"][:2] for f in feats], dtype=np.float64).reshape(-1, 2)
            props = pd.DataFrame([f.get("properties") or {} for f in feats], index=range(len(feats)))
            views.append((gj.name, props.assign(**{lat: coords[:, 1], lon: coords[:, 0]})))
        except (OSError, ValueError, KeyError, TypeError) as e:
            actx.finding("snap-points", False, f"{gj.name}: unreadable ({type(e).__name__})", file=gj.name)
    return views


def _point_check(step: Any, nodes: pd.DataFrame, frame: pd.DataFrame, lat: str, lon: str, actx: AssessContext,
                 file: str) -> tuple[np.ndarray, np.ndarray]:
    """Finding `snap-points` for one file; returns (row at an eligible node, node index per row)."""
    la = pd.to_numeric(frame[lat], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    lo = pd.to_numeric(frame[lon], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    have = ~np.isnan(la) & ~np.isnan(lo)
    half = np.isnan(la) != np.isnan(lo)
    keys = coord_keys(la, lo)
    pos = np.clip(np.searchsorted(nodes["key"].to_numpy(), keys), 0, len(nodes) - 1)
    found = have & (nodes["key"].to_numpy()[pos] == keys)
    ok_node = found & nodes["eligible"].to_numpy()[pos]
    node_of = np.where(found, nodes["node"].to_numpy()[pos], -1)
    not_node = have & ~found
    ineligible = found & ~ok_node
    bad = not_node | ineligible | half
    msg = (f"all {int(have.sum()):,} published points are eligible nodes of the network"
           + (f" (min_addresses {step.min_addresses})" if step.min_addresses else "")) if not bad.any() else \
        "; ".join(x for x in (
            f"{int(not_node.sum())} published point(s) are not nodes of the network (rows {_rows(not_node)})"
            if not_node.any() else "",
            f"{int(ineligible.sum())} point(s) at nodes below min_addresses {step.min_addresses} (rows {_rows(ineligible)})"
            if ineligible.any() else "",
            f"{int(half.sum())} row(s) with only one coordinate (rows {_rows(half)})" if half.any() else "") if x)
    actx.finding("snap-points", not bad.any(), msg, file=file, figure=int(bad.sum()), threshold=0)
    return ok_node, node_of


def verify_snap(step: Any, views: list[tuple[str, pd.DataFrame]], lat: str, lon: str,
                actx: AssessContext) -> dict[str, Any]:
    """Prove every published point is an eligible node (and in the row's own area with `within`).

    Figures come from the first view (the CSV); every view gets its own findings.
    """
    net, where = _network_for_check(step, actx)
    if net is None:
        actx.finding("snap-network", False, where, file=views[0][0])
        return {}
    actx.finding("snap-network", True, f"network {where} matches the manifest sha256 ({len(net):,} nodes)")
    try:
        eligible = net.eligible(step.min_addresses)
    except ReleaseError as e:
        actx.finding("snap-points", False, e.message, file=views[0][0])
        return {}
    nodes = pd.DataFrame({"key": net.keys(), "node": np.arange(len(net)), "eligible": eligible})
    # Two nodes may share a point at the published precision: the point is fine if either is eligible.
    nodes = nodes.sort_values(["key", "eligible"], ascending=[True, False]).drop_duplicates("key")
    figures: dict[str, Any] = {}
    pairs = None
    for n_view, (file, frame) in enumerate(views):
        ok_node, node_of = _point_check(step, nodes, frame, lat, lon, actx, file)
        if n_view == 0:
            figures.update(address_figures(net.counts, node_of[ok_node]))
        w = step.within
        if w is None or w.column is None or w.column not in frame.columns:
            continue
        if pairs is None:
            opts = actx.options | _layer_options(actx)
            try:
                pairs = node_areas(net, w, opts, None)
                layer = areas_for(w.areas, opts, None, net.projector) if w.areas is not None else None
            except ReleaseError as e:
                actx.finding("snap-within", False, f"area layer unavailable: {e.message}", file=file)
                break
            recorded = (_manifest(actx).get("network") or {}).get("areas") or {}
            if layer is not None and recorded.get("sha256") and recorded["sha256"] != layer.manifest["sha256"]:
                actx.finding("snap-within", False, f"area layer {layer.manifest['file']}: sha256 differs from the"
                             " manifest's (not the layer this bundle was snapped within)", file=file)
                break
        rows = np.flatnonzero(ok_node)
        member = pd.DataFrame({"node": pairs[0], "area": pairs[1]}).drop_duplicates()
        probe = pd.DataFrame({"node": node_of[rows], "area": area_text(frame[w.column])[rows], "r": np.arange(len(rows))})
        hit = probe.merge(member, on=["node", "area"], how="left", indicator=True)
        outside = np.zeros(len(frame), dtype=bool)
        outside[rows[hit.loc[hit["_merge"] == "left_only", "r"].to_numpy()]] = True
        if n_view == 0:
            figures["area_changed"] = int(outside.sum())
        actx.finding("snap-within", not outside.any(),
                     f"every snapped point lies in its row's {w.column}" if not outside.any() else
                     f"{int(outside.sum())} point(s) lie outside their row's {w.column} (rows {_rows(outside)})",
                     file=file, figure=int(outside.sum()), threshold=0)
    gate = actx.policy.gate.min_addresses
    if gate is not None:
        got = figures.get("min_addresses_per_node")
        ok = got is not None and got >= gate
        actx.finding("min-addresses", ok,
                     f"fewest addresses at a published node: {got} (gate {gate})" if got is not None else
                     "address counts unknown: the min_addresses gate cannot be proven", file=views[0][0],
                     figure=got, threshold=gate)
    return figures


def _layer_options(actx: AssessContext) -> dict[str, Any]:
    """Area layers come from the verifier (options or release.toml [files.layers]), never from the bundle."""
    return {}


def _withheld_findings(policy: Any, table: pd.DataFrame, lat: str, lon: str, actx: AssessContext,
                       file: str | None) -> dict[str, int]:
    """Rows a withhold-location condition matches, and NSA rows, must carry no coordinates."""
    counts: dict[str, int] = {}
    la = pd.to_numeric(table[lat], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    lo = pd.to_numeric(table[lon], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    have = ~np.isnan(la) | ~np.isnan(lo)
    areas = [c for c in policy.input.role_columns(Role.area) if c in table.columns]
    if areas:
        nsa = np.zeros(len(table), dtype=bool)
        for c in areas:
            nsa |= (table[c].astype("string") == NSA).fillna(False).to_numpy(dtype=bool)
        leak = nsa & have
        actx.finding("nsa-no-coordinates", not leak.any(),
                     f"{int(nsa.sum())} NSA row(s) carry no coordinates" if not leak.any() else
                     f"{int(leak.sum())} NSA row(s) carry coordinates (rows {_rows(leak)})",
                     file=file, figure=int(leak.sum()), threshold=0)
    steps: list[Any] = list(policy.steps)
    for s in steps:
        if s.type != "withhold-location":
            continue
        if not all(c.column in table.columns for c in s.when):
            continue
        m = s.mask(table)
        counts[s.reason] = int(m.sum())
        leak = m & have
        actx.finding("withheld-locations", not leak.any(),
                     f"{int(m.sum())} row(s) where {' and '.join(c.describe() for c in s.when)} carry no coordinates"
                     if not leak.any() else
                     f"{int(leak.sum())} row(s) that must be withheld ({s.reason}) carry coordinates (rows {_rows(leak)})",
                     file=file, figure=int(leak.sum()), threshold=0)
    return counts


@register_assessor("records")
def location_figures(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    policy = actx.policy
    steps: list[Any] = list(policy.steps)
    geo = [(i, s) for i, s in enumerate(steps) if s.type in GEO_STEPS]
    if not geo or out.name not in tables:
        return {}
    t = tables[out.name]
    ev = _evidence(actx)
    masks = [(i, s) for i, s in geo if s.type in MASK_STEPS]
    mask_i, mask_step = masks[-1] if masks else (None, None)
    method = MASK_STEPS[mask_step.type] if mask_step is not None else "withheld"
    fig: dict[str, Any] = {"method": method}
    if mask_i is not None and mask_i in ev:
        e = ev[mask_i]
        for k in ("displacement_m", "displacement_histogram", "area_changed", "min_addresses_per_node", "share_records_below",
                  "units_per_point", "widened", "bounds_verified"):
            if e.get(k) is not None:
                fig[k] = e[k]
    coords = _published_coords(policy, t)
    if coords is None:
        fig["withheld"] = {"count": int(len(t)), "reasons": {"coordinates not published": int(len(t))}}
        return {"location": fig}
    lat, lon = coords
    unit = next((c for c in policy.input.role_columns(Role.privacy_unit) if c in t.columns), None)
    stats = point_stats(t, lat, lon, unit)
    # Units per point from the last geomask step's evidence when the unit column is not published.
    last_ev = ev.get(geo[-1][0], {})
    if "units_per_point" not in stats and "units_per_point" in last_ev:
        stats["units_per_point"] = last_ev["units_per_point"]
    fig.update(stats)
    la = t[lat].to_numpy(dtype=np.float64, na_value=np.nan)
    no_coords = int(np.isnan(la).sum())
    reasons: dict[str, int] = {}
    for i, s in geo:
        got = ev.get(i)
        if got is None:
            continue
        e = got
        for r, n in ((e.get("nsa") or {}).get("reasons") or {}).items():
            reasons[f"NSA: {r}"] = reasons.get(f"NSA: {r}", 0) + int(n)
        if s.type == "withhold-location":
            reasons[s.reason] = reasons.get(s.reason, 0) + int(e.get("had_coordinates", 0))
        elif s.type == "geomask-donut" and e.get("withheld"):
            reasons["donut fallback: outside its area"] = int(e["withheld"])
    views = _published_views(actx, out.name, t, lat, lon)
    checked: dict[str, int] = {}
    for n_view, (vfile, vframe) in enumerate(views):
        got = _withheld_findings(policy, vframe, lat, lon, actx, vfile)
        if n_view == 0:
            checked = got
    if actx.run is None:
        # The reasons come from the run's evidence (signed with the manifest); the files prove the count.
        fig["withheld"] = {"count": no_coords}
    else:
        if not reasons:
            reasons = {**checked, **({"no coordinates": no_coords} if no_coords else {})}
        fig["withheld"] = {"count": no_coords, "reasons": reasons}
    if mask_step is not None and mask_step.type == "geomask-snap":
        fig.update(verify_snap(mask_step, views, lat, lon, actx))
    return {"location": fig}
