"""Street networks (intersection nodes, address counts per node) and polygon area layers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from pydantic import Field, model_validator
from scipy.spatial import cKDTree

from release.errors import InputError, UsageError
from release.geomask.projection import Projector
from release.governance.trusted import trusted_path
from release.io.bundle import file_sha256
from release.policy.base import StrictModel

if TYPE_CHECKING:
    from release.policy.models import Jurisdiction

PRECISION = 7
"Decimals of published coordinates (about 1 cm); points and nodes are compared at this precision."

_LAT_ALIASES = ("lat", "latitude", "Lat", "Latitude", "LAT", "LATITUDE", "y", "Y")
_LON_ALIASES = ("lon", "long", "longitude", "Long", "Longitude", "LON", "LONGITUDE", "x", "X")


class NetworkConfig(StrictModel):
    """Where the intersection nodes (and the address points counted per node) come from."""

    nodes: str | None = None
    "Intersection nodes (CSV, Parquet or GeoJSON points), relative to the policy; `--network` overrides it."
    streets: str | None = None
    "Street centreline GeoJSON to derive nodes from when no nodes file is given."
    addresses: str | None = None
    "Address points (CSV/Parquet with lat/lon); each is counted at its nearest node (police.uk's rule)."
    id_column: str = "node_id"
    "Node id column (or GeoJSON property); ids must be unique so a published point names one node."
    lat_column: str = "lat"
    "Node latitude column (WGS84)."
    lon_column: str = "lon"
    "Node longitude column (WGS84)."
    count_column: str | None = "address_count"
    "Column holding a precomputed address count per node, used when no address file is given."
    bend_angle: float | None = Field(default=None, gt=0, lt=180)
    "When deriving from streets: a vertex where two segments meet and turn by at least this many degrees is a node."


class AreaLayer(StrictModel):
    """A polygon layer (neighbourhoods, divisions) named by a run option or a path."""

    layer: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    "Name of the run option holding the layer's file (the demo passes `neighbourhoods`, `divisions`)."
    path: str | None = None
    "GeoJSON file of polygons, relative to the policy, used when the run gives no option of that name."
    property: str
    "Feature property holding the area value (compared as text with the records' area column)."


@dataclass
class Network:
    """Intersection nodes in WGS84 and in the metric CRS, with address counts when known."""

    ids: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray | None
    manifest: dict[str, Any]
    projector: Projector
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    "Other node columns (e.g. an area attribute), as read."
    _tree: cKDTree | None = field(default=None, repr=False)
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    "Per-area KD-trees and memberships, built once per network and rule."

    def __len__(self) -> int:
        return int(len(self.ids))

    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(np.column_stack([self.x, self.y]), balanced_tree=False, compact_nodes=True)
        return self._tree

    def eligible(self, min_addresses: int | None) -> np.ndarray:
        """Mask of nodes a point may be snapped to under the address-count rule."""
        if min_addresses is None:
            return np.ones(len(self), dtype=bool)
        if self.counts is None:
            raise UsageError("min_addresses is set but the network has no address counts: give an address file"
                             " (network.addresses or --addresses) or a nodes file with an address count column")
        return self.counts >= min_addresses

    def keys(self) -> np.ndarray:
        """Integer keys of the published-precision coordinates (exact comparison without float noise)."""
        return coord_keys(self.lat, self.lon)


@dataclass
class AreaPolygons:
    """One polygon layer in the metric CRS, with the area value of each polygon."""

    values: np.ndarray
    geoms: np.ndarray
    tree: shapely.STRtree
    manifest: dict[str, Any]

    def membership(self, x: np.ndarray, y: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
        """(point index, area value) pairs: every polygon within `tolerance` metres of each point.

        Points on a shared boundary (intersections on the street that divides two areas) belong
        to both areas: the street is the boundary.
        """
        pts = shapely.points(x, y)
        if tolerance > 0:
            pi, gi = self.tree.query(pts, predicate="dwithin", distance=tolerance)
        else:
            pi, gi = self.tree.query(pts, predicate="intersects")
        return pi, self.values[gi]

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The single area holding each point (the first polygon when on a boundary); None outside all."""
        out = np.full(len(x), None, dtype=object)
        pi, vals = self.membership(x, y, 0.0)
        if len(pi):
            first = np.unique(pi, return_index=True)[1]
            out[pi[first]] = vals[first]
        return out


def coord_keys(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """One int per point at the published precision; NaN coordinates get a key no node has."""
    s = 10 ** PRECISION
    la = np.round(np.asarray(lat, dtype=np.float64) * s)
    lo = np.round(np.asarray(lon, dtype=np.float64) * s)
    bad = np.isnan(la) | np.isnan(lo)
    la = np.where(bad, 0, la).astype(np.int64)
    lo = np.where(bad, 0, lo).astype(np.int64)
    # lat*1e7 fits in 31 bits, lon*1e7 in 32: pack both into one int64 (pairs compare exactly).
    k = (la << 32) ^ (lo & 0xFFFFFFFF)
    return np.where(bad, np.iinfo(np.int64).min, k)




def _rows(mask: np.ndarray, limit: int = 20) -> str:
    r = np.flatnonzero(mask) + 1
    more = f" and {len(r) - limit} more" if len(r) > limit else ""
    return ", ".join(str(int(v)) for v in r[:limit]) + more


def _pick(frame: pd.DataFrame, want: str, aliases: tuple[str, ...], path: Path, what: str) -> str:
    if want in frame.columns:
        return want
    for a in aliases:
        if a in frame.columns:
            return a
    raise InputError(f"network file {path}: no {what} column (expected {want!r}; columns are {list(frame.columns)})")


def _read_points(path: Path, cfg: NetworkConfig) -> pd.DataFrame:
    """A node table (id, lat, lon[, count]) from CSV, Parquet or GeoJSON points."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".geojson", ".json"):
            doc = json.loads(path.read_text(encoding="utf-8"))
            feats = doc.get("features", []) if isinstance(doc, dict) else []
            rows = []
            for i, f in enumerate(feats):
                g = f.get("geometry") or {}
                if g.get("type") != "Point":
                    raise InputError(f"network file {path}: feature {i + 1} is a {g.get('type')!r}, not a Point"
                                     " (give street centrelines as `streets`)")
                props = f.get("properties") or {}
                c = g.get("coordinates") or [None, None]
                rows.append({cfg.id_column: props.get(cfg.id_column, f.get("id", i + 1)),
                             cfg.lon_column: c[0], cfg.lat_column: c[1],
                             **({cfg.count_column: props.get(cfg.count_column)}
                                if cfg.count_column and cfg.count_column in props else {})})
            return pd.DataFrame(rows, columns=None if rows else [cfg.id_column, cfg.lat_column, cfg.lon_column])
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={cfg.id_column: str})
    except InputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        # Parser messages can quote a row: name the kind of failure only.
        raise InputError(f"network file {path}: unreadable ({type(e).__name__}) [rule: network-format]") from None


def _is_streets(path: Path) -> bool:
    if path.suffix.lower() not in (".geojson", ".json"):
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16).decode("utf-8", "ignore")
    return '"LineString"' in head or '"MultiLineString"' in head


def derive_nodes(path: Path, projector: Projector, bend_angle: float | None) -> pd.DataFrame:
    """Intersection nodes of a centreline layer: segment ends shared by 3+ segments, or 2 that turn."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"streets file {path}: unreadable ({type(e).__name__})") from None
    parts: list[list[list[float]]] = []
    for f in doc.get("features", []) if isinstance(doc, dict) else []:
        g = f.get("geometry") or {}
        if g.get("type") == "LineString":
            parts.append(g["coordinates"])
        elif g.get("type") == "MultiLineString":
            parts.extend(g["coordinates"])
    parts = [p for p in parts if len(p) >= 2]
    if not parts:
        return pd.DataFrame({"node_id": pd.Series([], dtype=str), "lat": [], "lon": []})
    ends = np.array([[p[0][:2], p[1][:2], p[-1][:2], p[-2][:2]] for p in parts], dtype=np.float64)
    # Each segment contributes two ends: (end point, the vertex next to it along the line).
    end_pts = np.concatenate([ends[:, 0], ends[:, 2]])
    nbr_pts = np.concatenate([ends[:, 1], ends[:, 3]])
    keys = coord_keys(end_pts[:, 1], end_pts[:, 0])
    uniq, first, inv, deg = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    is_node = deg >= 3
    if bend_angle is not None and (deg == 2).any():
        ex, ey = projector.to_metric(end_pts[:, 0], end_pts[:, 1])
        nx, ny = projector.to_metric(nbr_pts[:, 0], nbr_pts[:, 1])
        order = np.argsort(inv, kind="stable")
        starts = np.r_[0, np.cumsum(deg)[:-1]]
        two = np.flatnonzero(deg == 2)
        a, b = order[starts[two]], order[starts[two] + 1]
        va = np.column_stack([nx[a] - ex[a], ny[a] - ey[a]])
        vb = np.column_stack([nx[b] - ex[b], ny[b] - ey[b]])
        cos = np.einsum("ij,ij->i", va, vb) / np.maximum(np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1), 1e-12)
        # Two halves of a straight street point in opposite directions (180 degrees): the turn is 0.
        turn = 180.0 - np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        is_node[two[turn >= bend_angle]] = True
    sel = first[is_node]
    return pd.DataFrame({"node_id": [f"S{k:07d}" for k in range(int(is_node.sum()))],
                         "lat": np.round(end_pts[sel, 1], PRECISION), "lon": np.round(end_pts[sel, 0], PRECISION)})


def address_points(path: Path, projector: Projector) -> tuple[np.ndarray, np.ndarray]:
    """Address points (CSV/Parquet with lat/lon) in the metric CRS."""
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"address file {path}: unreadable ({type(e).__name__})") from None
    lat_c = _pick(frame, "lat", _LAT_ALIASES, path, "latitude")
    lon_c = _pick(frame, "lon", _LON_ALIASES, path, "longitude")
    lat = pd.to_numeric(frame[lat_c], errors="coerce").to_numpy(dtype=np.float64)
    lon = pd.to_numeric(frame[lon_c], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(lat) | np.isnan(lon)
    if bad.any():
        raise InputError(f"address file {path}: column {lat_c}/{lon_c} missing or not numeric in rows {_rows(bad)}")
    return projector.to_metric(lon, lat)


def count_addresses(path: Path, net_x: np.ndarray, net_y: np.ndarray, projector: Projector) -> np.ndarray:
    """Addresses per node catchment: each address counts at its nearest node (KD-tree)."""
    ax, ay = address_points(path, projector)
    _, idx = cKDTree(np.column_stack([net_x, net_y]), balanced_tree=False).query(np.column_stack([ax, ay]), workers=-1)
    return np.bincount(idx, minlength=len(net_x)).astype(np.int64)


_NET_CACHE: dict[tuple[Any, ...], Network] = {}


def _stamp(p: Path | None) -> tuple[Any, ...] | None:
    if p is None:
        return None
    st = p.stat()
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)


def load_network(nodes_path: Path | None, streets_path: Path | None, addresses_path: Path | None,
                 cfg: NetworkConfig, jurisdiction: Jurisdiction, projector: Projector) -> Network:
    """Load (or derive) and validate the nodes; count addresses per node when an address file is given."""
    for what, p in (("network", nodes_path), ("streets", streets_path), ("address", addresses_path)):
        if p is not None and not p.is_file():
            raise UsageError(f"{what} file {p} does not exist")
    if nodes_path is not None and _is_streets(nodes_path):
        nodes_path, streets_path = None, nodes_path
    key = (_stamp(nodes_path), _stamp(streets_path), _stamp(addresses_path), cfg, jurisdiction, projector.name)
    if key in _NET_CACHE:
        return _NET_CACHE[key]
    source = nodes_path or streets_path
    if source is None:
        raise UsageError("no street network: give network.nodes or network.streets in the policy, or --network")
    if nodes_path is not None:
        frame = _read_points(nodes_path, cfg)
        id_c = _pick(frame, cfg.id_column, ("node_id", "id", "ID", "NODE_ID", "INTERSECTION_ID"), source, "node id")
        lat_c = _pick(frame, cfg.lat_column, _LAT_ALIASES, source, "latitude")
        lon_c = _pick(frame, cfg.lon_column, _LON_ALIASES, source, "longitude")
        count_c = cfg.count_column if cfg.count_column and cfg.count_column in frame.columns else None
    else:
        assert streets_path is not None
        frame = derive_nodes(streets_path, projector, cfg.bend_angle)
        id_c, lat_c, lon_c, count_c = "node_id", "lat", "lon", None
    if len(frame) == 0:
        raise InputError(f"network file {source}: holds no nodes; a snap needs at least one intersection node")
    ids = frame[id_c].astype("string").to_numpy(dtype=object, na_value=None)
    lat = pd.to_numeric(frame[lat_c], errors="coerce").to_numpy(dtype=np.float64)
    lon = pd.to_numeric(frame[lon_c], errors="coerce").to_numpy(dtype=np.float64)
    problems: list[str] = []
    missing_id = pd.isna(pd.Series(ids)).to_numpy()
    if missing_id.any():
        problems.append(f"[node-id] column {id_c!r}: missing id in rows {_rows(missing_id)}")
    dup = pd.Series(ids).duplicated(keep=False).to_numpy() & ~missing_id
    if dup.any():
        problems.append(f"[duplicate-node-id] column {id_c!r}: node id is not unique in rows {_rows(dup)}")
    bad = np.isnan(lat) | np.isnan(lon)
    if bad.any():
        problems.append(f"[node-coordinates] columns {lat_c}/{lon_c}: missing or not numeric in rows {_rows(bad)}")
    min_lon, min_lat, max_lon, max_lat = jurisdiction.bbox
    outside = ~bad & ~((lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon))
    if outside.any():
        problems.append(f"[node-outside-jurisdiction] columns {lat_c}/{lon_c}: node outside the jurisdiction's bbox"
                        f" {list(jurisdiction.bbox)} in rows {_rows(outside)}")
    counts = None
    if count_c is not None:
        c = pd.to_numeric(frame[count_c], errors="coerce").to_numpy(dtype=np.float64)
        badc = np.isnan(c) | (c < 0) | (np.mod(np.where(np.isnan(c), 0, c), 1) != 0)
        if badc.any():
            problems.append(f"[address-count] column {count_c!r}: not a non-negative integer in rows {_rows(badc)}")
        counts = np.where(badc, 0, c).astype(np.int64)
    if problems:
        raise InputError(f"network file {source}: {len(problems)} rule(s) broken; nothing was published",
                         details=problems)
    x, y = projector.to_metric(lon, lat)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(f"network file {source}: nodes cannot be projected to {projector.name}"
                         f" (rows {_rows(~(np.isfinite(x) & np.isfinite(y)))})")
    # Names, never paths: a bundle must not carry this machine's folders (and must stay portable).
    manifest: dict[str, Any] = {"file": source.name, "sha256": file_sha256(source),
                                "source": "nodes" if nodes_path is not None else "streets",
                                "nodes": int(len(ids)), "crs": projector.name}
    if addresses_path is not None:
        counts = count_addresses(addresses_path, x, y, projector)
        manifest["addresses"] = {"file": addresses_path.name, "sha256": file_sha256(addresses_path),
                                 "count": int(counts.sum())}
    attrs = {str(c): frame[c].to_numpy(dtype=object) for c in frame.columns if c not in (id_c, lat_c, lon_c, count_c)}
    net = Network(ids=ids, lat=lat, lon=lon, x=x, y=y, counts=counts, manifest=manifest, projector=projector,
                  attrs=attrs)
    if len(_NET_CACHE) > 8:
        _NET_CACHE.clear()
    _NET_CACHE[key] = net
    return net


_AREA_CACHE: dict[tuple[Any, ...], AreaPolygons] = {}


def load_areas(path: Path, prop: str, projector: Projector) -> AreaPolygons:
    """A polygon layer projected to the metric CRS; the property value of each polygon as text."""
    if not path.is_file():
        raise UsageError(f"area layer {path} does not exist")
    key = (_stamp(path), prop, projector.name)
    if key in _AREA_CACHE:
        return _AREA_CACHE[key]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        feats = doc["features"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"area layer {path}: not a GeoJSON FeatureCollection ({type(e).__name__})") from None
    geoms, values, bad = [], [], []
    for i, f in enumerate(feats):
        g = f.get("geometry") or {}
        props = f.get("properties") or {}
        if g.get("type") not in ("Polygon", "MultiPolygon") or props.get(prop) is None:
            bad.append(i + 1)
            continue
        geoms.append(shapely.geometry.shape(g))
        v = props[prop]
        values.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    if bad:
        raise InputError(f"area layer {path}: features {bad[:20]} are not polygons with a {prop!r} property")
    if not geoms:
        raise InputError(f"area layer {path}: holds no polygons")

    def _to_m(xy: np.ndarray) -> np.ndarray:
        x, y = projector.to_metric(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    garr = shapely.transform(np.array(geoms, dtype=object), _to_m)
    shapely.prepare(garr)
    layer = AreaPolygons(values=np.array(values, dtype=object), geoms=garr, tree=shapely.STRtree(garr),
                         manifest={"file": path.name, "sha256": file_sha256(path), "property": prop})
    _AREA_CACHE[key] = layer
    return layer


def area_text(values: pd.Series) -> np.ndarray:
    """Area values as text, the way polygon properties are compared (75 == '75')."""
    s = values
    if pd.api.types.is_float_dtype(s):
        s = s.astype("Int64")
    return s.astype("string").to_numpy(dtype=object, na_value=None)


class WithinConfig(StrictModel):
    """Keep each point in its own area, so area counts are not changed by the mask."""

    column: str | None = None
    "The records' area column; when absent the record's area is found from its original point."
    areas: AreaLayer | None = None
    "Polygon layer the nodes (and, without `column`, the records) are located in."
    node_column: str | None = None
    "Alternatively, a node attribute naming each node's area (no polygon layer needed)."
    tolerance: float = Field(default=1.0, ge=0)
    "Metres: a node this close to an area's polygon belongs to it (nodes on a boundary street serve both sides)."

    @model_validator(mode="after")
    def _source(self) -> WithinConfig:
        if self.areas is None and self.node_column is None:
            raise ValueError("give `areas` (a polygon layer) or `node_column` (a node attribute)")
        if self.column is None and self.areas is None:
            raise ValueError("without `column`, the record's area is located in `areas`: give it")
        return self


def area_changed(layer: AreaPolygons, x: np.ndarray, y: np.ndarray, record_area: np.ndarray,
                 tolerance: float) -> int:
    """Records whose published point lies in none of the polygons of their own area."""
    if len(x) == 0:
        return 0
    pi, vals = layer.membership(x, y, tolerance)
    inside = np.zeros(len(x), dtype=bool)
    inside[pi[vals == record_area[pi]]] = True
    return int((~inside).sum())


def resolve_path(value: str | None, option: str | None, options: dict[str, Any], policy_path: Path | None) -> Path | None:
    """Run option (CLI, release.toml [files], demo) first, then the policy's path relative to the policy file."""
    if option and options.get(option):
        return Path(options[option])
    if value is None:
        return None
    p = Path(value)
    if p.is_absolute() or policy_path is None:
        return p
    return policy_path.parent / p


def network_paths(cfg: NetworkConfig, options: dict[str, Any],
                  policy_path: Path | None) -> tuple[Path | None, Path | None, Path | None]:
    """(nodes, streets, addresses) as given, before any is read."""
    nodes = resolve_path(cfg.nodes, "network", options, policy_path)
    streets = resolve_path(cfg.streets, None, options, policy_path)
    if nodes is None and streets is None and options.get("streets"):
        streets = Path(options["streets"])
    addresses = resolve_path(cfg.addresses, "addresses", options, policy_path)
    return nodes, streets, addresses


def network_for(cfg: NetworkConfig, options: dict[str, Any], policy_path: Path | None,
                jurisdiction: Jurisdiction, projector: Projector) -> Network:
    nodes, streets, addresses = network_paths(cfg, options, policy_path)
    return load_network(trusted_path(options, "network", "network", nodes),
                        trusted_path(options, "streets", "streets", streets),
                        trusted_path(options, "addresses", "addresses", addresses), cfg, jurisdiction, projector)


def areas_for(layer: AreaLayer, options: dict[str, Any], policy_path: Path | None, projector: Projector) -> AreaPolygons:
    p = resolve_path(layer.path, layer.layer, options, policy_path)
    if p is None:
        raise UsageError(f"area layer {layer.layer!r}: no file (give its path in the policy, with --layer"
                         f" {layer.layer}=FILE, or in release.toml [files.layers])")
    return load_areas(trusted_path(options, layer.layer, "layer", p), layer.property, projector)  # type: ignore[arg-type]
