"""Seeded demo city: street centrelines, intersection nodes, address points, neighbourhoods and divisions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from faker import Faker
from pyproj import Transformer
from scipy.spatial import cKDTree

__all__ = ["City", "demo_city", "PROJECTED_CRS"]

# NAD83(CSRS) / MTM zone 10 is the metric CRS the City of Toronto publishes in; all geometry is
# built there so distances are metres, then converted to WGS84 once at the end.
PROJECTED_CRS = "EPSG:2952"
_TO_M = Transformer.from_crs("EPSG:4326", PROJECTED_CRS, always_xy=True)
_TO_DEG = Transformer.from_crs(PROJECTED_CRS, "EPSG:4326", always_xy=True)

_CENTRE_LONLAT = (-79.40, 43.70)
_WIDTH_M = 12_000.0
_HEIGHT_M = 10_000.0
_N_COLS = 7  # arterial blocks west->east (~1.7 km each)
_N_ROWS = 6  # arterial blocks south->north (~1.7 km each)
_DIVISION_SPLIT_COL = 4  # the west/east division boundary is this arterial for every row
# 7 decimals is ~1 cm: enough precision, and rounding once lets nodes and street endpoints match exactly.
_DEG_DECIMALS = 7

_HOOD_NAMES = [
    "Harbourview",
    "Cedar Heights",
    "Maple Grove",
    "Kingsway Park",
    "Riverside Flats",
    "Old Mill East",
    "Birchcliff Commons",
    "Lantern Hill",
    "Garrison Yards",
    "Wychwood South",
    "Stonegate Crossing",
    "Bellamy Green",
    "Queensbury",
    "Ashbridge Landing",
    "Foxwell",
    "Elmcrest",
    "Parkdale West",
    "Tannery Row",
    "Silverthorn",
    "Bayfront Village",
    "Northcliffe",
    "Dufferin Grove East",
    "Alder Park",
    "Carlaw Junction",
    "Westmount Terrace",
    "Oriole Ridge",
]
# Six divisions: three south->north bands of block rows, each split west/east at one arterial.
_DIVISION_GRID = [["D14", "D51"], ["D22", "D11"], ["D12", "D31"]]


@dataclass(frozen=True)
class City:
    """A synthetic city: WGS84 node and address tables plus GeoJSON street and area layers."""

    nodes: pd.DataFrame
    addresses: pd.DataFrame
    streets: dict[str, Any]
    neighbourhoods: dict[str, Any]
    divisions: dict[str, Any]

    def write(self, folder: Path) -> None:
        """Write the city as CSV tables and GeoJSON layers into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.nodes.to_csv(folder / "nodes.csv", index=False)
        self.addresses.to_csv(folder / "addresses.csv", index=False)
        for name, layer in (
            ("streets", self.streets),
            ("neighbourhoods", self.neighbourhoods),
            ("divisions", self.divisions),
        ):
            (folder / f"{name}.geojson").write_text(
                json.dumps(layer, separators=(",", ":")), encoding="utf-8"
            )


def _breaks(rng: np.random.Generator, lo: float, hi: float, n: int, jitter: float) -> np.ndarray:
    """Evenly spaced arterial positions with the interior ones jittered (outer ones are the city edge)."""
    pos = np.linspace(lo, hi, n + 1)
    pos[1:-1] += rng.uniform(-jitter, jitter, n - 1)
    return pos


def _locals(
    rng: np.random.Generator, lo: float, hi: float, gap_lo: float, gap_hi: float
) -> np.ndarray:
    """Local-street positions strictly inside (lo, hi) at irregular spacing."""
    gaps = rng.uniform(gap_lo, gap_hi, int((hi - lo) / gap_lo) + 2)
    pos = lo + np.cumsum(gaps)
    # Drop a line that would sit too close to the far arterial: it would make a sliver block.
    return pos[pos < hi - 0.6 * gap_lo]


def _to_deg(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _TO_DEG.transform(x, y)
    return np.round(np.asarray(lon), _DEG_DECIMALS), np.round(np.asarray(lat), _DEG_DECIMALS)


def _street_names(fake: Faker, n: int) -> list[str]:
    suffixes = ["St", "Ave", "Rd", "Cres", "Dr", "Blvd", "Pl", "Gdns", "Crt", "Way"]
    stems = list(dict.fromkeys(fake.last_name() for _ in range(4 * n)))
    return [
        f"{stems[i % len(stems)]} {suffixes[(i * 7 + i // len(stems)) % len(suffixes)]}"
        for i in range(n)
    ]


def demo_city(seed: int = 7) -> City:
    """Build the seeded demo city (~5.5k nodes, ~84k addresses, 24 neighbourhoods, 6 divisions)."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_CA")
    fake.seed_instance(seed)

    cx, cy = _TO_M.transform(*_CENTRE_LONLAT)
    x0, x1 = cx - _WIDTH_M / 2, cx + _WIDTH_M / 2
    y0, y1 = cy - _HEIGHT_M / 2, cy + _HEIGHT_M / 2
    xa = _breaks(rng, x0, x1, _N_COLS, 250.0)
    ya = _breaks(rng, y0, y1, _N_ROWS, 250.0)
    # Downtown sits south-centre (by the "lake"), so density and street grain fall off from there.
    dtx, dty = cx + 300.0, y0 + 1800.0

    # A few outlying blocks are park/industrial: coarse streets, almost no addresses.
    blocks = [(i, j) for j in range(_N_ROWS) for i in range(_N_COLS)]
    bcx = (xa[:-1] + xa[1:]) / 2
    bcy = (ya[:-1] + ya[1:]) / 2
    far = [b for b in blocks if np.hypot(bcx[b[0]] - dtx, bcy[b[1]] - dty) > 3500]
    sparse = {far[k] for k in rng.choice(len(far), size=5, replace=False)}

    # Edge list columns: ax, ay, bx, by (a < b along the line), line id, arterial flag.
    seg_parts: list[np.ndarray] = []
    line_id = 0
    for i, j in blocks:
        bx0, bx1, by0, by1 = xa[i], xa[i + 1], ya[j], ya[j + 1]
        d = np.hypot(bcx[i] - dtx, bcy[j] - dty)
        if (i, j) in sparse:
            glo, ghi = 300.0, 550.0
        else:
            # Finer street grain downtown (~75-120 m) coarsening outward (~130-200 m).
            t = min(d / 6000.0, 1.0)
            glo, ghi = 75.0 + 55.0 * t, 120.0 + 80.0 * t
        lx = _locals(rng, bx0, bx1, glo, ghi)
        ly = _locals(rng, by0, by1, glo, ghi)
        gx = np.concatenate([[bx0], lx, [bx1]])
        gy = np.concatenate([[by0], ly, [by1]])
        # East-west locals: one line per interior y, broken at every vertical line of the block.
        if len(ly):
            yy = np.repeat(ly, len(gx) - 1)
            xs = np.tile(gx[:-1], len(ly))
            xe = np.tile(gx[1:], len(ly))
            lid = line_id + np.repeat(np.arange(len(ly)), len(gx) - 1)
            seg_parts.append(np.column_stack([xs, yy, xe, yy, lid, np.zeros_like(yy)]))
            line_id += len(ly)
        if len(lx):
            xx = np.repeat(lx, len(gy) - 1)
            ys = np.tile(gy[:-1], len(lx))
            ye = np.tile(gy[1:], len(lx))
            lid = line_id + np.repeat(np.arange(len(lx)), len(gy) - 1)
            seg_parts.append(np.column_stack([xx, ys, xx, ye, lid, np.zeros_like(xx)]))
            line_id += len(lx)

    loc = np.concatenate(seg_parts)
    # Removing ~13% of local pieces is what creates T-junctions, dead ends and missing crossings.
    loc = loc[rng.random(len(loc)) > 0.13]

    # Arterials are split wherever a surviving local street touches them, plus at arterial crossings.
    art_parts: list[np.ndarray] = []
    ends = np.concatenate([loc[:, 0:2], loc[:, 2:4]])
    for k, x in enumerate(xa):
        ys = np.unique(np.concatenate([ya, ends[ends[:, 0] == x, 1]]))
        art_parts.append(
            np.column_stack(
                [
                    np.full(len(ys) - 1, x),
                    ys[:-1],
                    np.full(len(ys) - 1, x),
                    ys[1:],
                    np.full(len(ys) - 1, line_id + k),
                    np.ones(len(ys) - 1),
                ]
            )
        )
    line_id += len(xa)
    for k, y in enumerate(ya):
        xs = np.unique(np.concatenate([xa, ends[ends[:, 1] == y, 0]]))
        art_parts.append(
            np.column_stack(
                [
                    xs[:-1],
                    np.full(len(xs) - 1, y),
                    xs[1:],
                    np.full(len(xs) - 1, y),
                    np.full(len(xs) - 1, line_id + k),
                    np.ones(len(xs) - 1),
                ]
            )
        )
    line_id += len(ya)
    edges = np.concatenate([loc] + art_parts)

    # Vertex degree from raw edges; a degree-2 vertex where two pieces of the same line meet is not an
    # intersection, so those pieces are merged into one segment between consecutive intersections.
    pts = np.concatenate([edges[:, 0:2], edges[:, 2:4]])
    _, inv, deg = np.unique(pts, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    a_id, b_id = inv[: len(edges)], inv[len(edges) :]
    order = np.lexsort((edges[:, 1] + edges[:, 0], edges[:, 4]))
    edges, a_id, b_id = edges[order], a_id[order], b_id[order]
    same_line = np.r_[False, edges[1:, 4] == edges[:-1, 4]]
    continues = same_line & np.r_[False, a_id[1:] == b_id[:-1]] & (deg[a_id] == 2)
    seg = np.cumsum(~continues) - 1
    first = np.flatnonzero(~continues)
    last = np.r_[first[1:] - 1, len(edges) - 1]
    sx0, sy0 = edges[first, 0], edges[first, 1]
    sx1, sy1 = edges[last, 2], edges[last, 3]
    s_line = edges[first, 4].astype(np.int64)
    s_art = edges[first, 5].astype(bool)
    s_len = np.hypot(sx1 - sx0, sy1 - sy0)
    del seg

    # Nodes: segment ends shared by 3+ segments (dead ends and bends are not intersections).
    spts = np.concatenate([np.column_stack([sx0, sy0]), np.column_stack([sx1, sy1])])
    upts, sdeg = np.unique(spts, axis=0, return_counts=True)
    node_xy = upts[sdeg >= 3]
    node_lon, node_lat = _to_deg(node_xy[:, 0], node_xy[:, 1])

    # Addresses: a Poisson count per segment from a density that decays away from downtown, placed
    # on either side of the centreline with a setback, keeping clear of the intersections themselves.
    mx, my = (sx0 + sx1) / 2, (sy0 + sy1) / 2
    sblock_i = np.clip(np.searchsorted(xa, mx, side="right") - 1, 0, _N_COLS - 1)
    sblock_j = np.clip(np.searchsorted(ya, my, side="right") - 1, 0, _N_ROWS - 1)
    dist = np.hypot(mx - dtx, my - dty)
    dens = 0.010 + 0.30 * np.exp(-((dist / 2600.0) ** 2)) + 0.025 * np.exp(-dist / 4000.0)
    is_sparse = np.array([(a, b) in sparse for a, b in zip(sblock_i, sblock_j, strict=True)])
    dens = np.where(is_sparse, 0.002, dens) * np.where(s_art, 1.3, 1.0)
    usable = np.maximum(s_len - 24.0, 0.0)
    counts = rng.poisson(dens * usable)
    sid = np.repeat(np.arange(len(s_len)), counts)
    along = 12.0 + rng.random(len(sid)) * usable[sid]
    ux = (sx1 - sx0)[sid] / s_len[sid]
    uy = (sy1 - sy0)[sid] / s_len[sid]
    side = rng.choice([-1.0, 1.0], len(sid))
    setback = np.where(
        s_art[sid], rng.uniform(14.0, 30.0, len(sid)), rng.uniform(8.0, 22.0, len(sid))
    )
    ax = sx0[sid] + ux * along - uy * side * setback
    ay = sy0[sid] + uy * along + ux * side * setback
    # Keep every address inside the city so it always falls in some neighbourhood polygon.
    ax = np.clip(ax, x0 + 1.0, x1 - 1.0)
    ay = np.clip(ay, y0 + 1.0, y1 - 1.0)
    addr_lon, addr_lat = _to_deg(ax, ay)

    tree = cKDTree(node_xy)
    _, nearest = tree.query(np.column_stack([ax, ay]))
    addr_count = np.bincount(nearest, minlength=len(node_xy)).astype(np.int64)

    nodes = pd.DataFrame(
        {
            "node_id": [f"N{k:06d}" for k in range(len(node_xy))],
            "lat": node_lat.astype(np.float64),
            "lon": node_lon.astype(np.float64),
            "address_count": addr_count,
        }
    )
    addresses = pd.DataFrame(
        {
            "address_id": [f"A{k:07d}" for k in range(len(ax))],
            "lat": addr_lat.astype(np.float64),
            "lon": addr_lon.astype(np.float64),
        }
    )

    # Street names: one per line, so every piece of a street carries the same name.
    names = _street_names(fake, line_id)
    slon0, slat0 = _to_deg(sx0, sy0)
    slon1, slat1 = _to_deg(sx1, sy1)
    streets = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "street_id": f"S{k:06d}",
                    "name": names[s_line[k]],
                    "kind": "arterial" if s_art[k] else "local",
                },
                "geometry": {
                    "type": "LineString",
                    "coordinates": [
                        [float(slon0[k]), float(slat0[k])],
                        [float(slon1[k]), float(slat1[k])],
                    ],
                },
            }
            for k in range(len(s_len))
        ],
    }

    neighbourhoods, divisions = _areas(rng, xa, ya, upts)
    return City(
        nodes=nodes,
        addresses=addresses,
        streets=streets,
        neighbourhoods=neighbourhoods,
        divisions=divisions,
    )


def _rect(
    pts: np.ndarray, xmin: float, ymin: float, xmax: float, ymax: float
) -> list[list[list[float]]]:
    """A closed WGS84 ring for a metre rectangle whose edges run along arterials.

    Every street vertex lying on an edge becomes a ring vertex, so intersections on a border are ring
    vertices with identical rounded coordinates and always test as covered (a straight lon/lat edge
    between the corners would drift centimetres off the projected arterial).
    """
    on_s = pts[(pts[:, 1] == ymin) & (pts[:, 0] >= xmin) & (pts[:, 0] <= xmax)]
    on_e = pts[(pts[:, 0] == xmax) & (pts[:, 1] >= ymin) & (pts[:, 1] <= ymax)]
    on_n = pts[(pts[:, 1] == ymax) & (pts[:, 0] >= xmin) & (pts[:, 0] <= xmax)]
    on_w = pts[(pts[:, 0] == xmin) & (pts[:, 1] >= ymin) & (pts[:, 1] <= ymax)]
    # Counter-clockwise: south edge west->east, east edge south->north, and so on; corners appear once.
    xs = np.concatenate(
        [
            np.sort(on_s[:, 0])[:-1],
            np.full(len(on_e) - 1, xmax),
            np.sort(on_n[:, 0])[::-1][:-1],
            np.full(len(on_w) - 1, xmin),
        ]
    )
    ys = np.concatenate(
        [
            np.full(len(on_s) - 1, ymin),
            np.sort(on_e[:, 1])[:-1],
            np.full(len(on_n) - 1, ymax),
            np.sort(on_w[:, 1])[::-1][:-1],
        ]
    )
    lon, lat = _to_deg(xs, ys)
    ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    return [ring + [ring[0]]]


def _areas(
    rng: np.random.Generator, xa: np.ndarray, ya: np.ndarray, pts: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Neighbourhoods are runs of 1-3 arterial blocks per row; divisions are unions of whole ones."""
    west = [[2, 2], [1, 3], [3, 1]]
    east = [[1, 2], [2, 1]]
    hoods: list[dict[str, Any]] = []
    names = list(_HOOD_NAMES)
    order = rng.permutation(len(names))
    code = 0
    # Codes run from the north-west corner, the way city numbering reads on a map.
    for j in reversed(range(_N_ROWS)):
        runs = west[rng.integers(len(west))] + east[rng.integers(len(east))]
        start = 0
        for r in runs:
            code += 1
            sc = f"{code:03d}"
            hoods.append(
                {
                    "type": "Feature",
                    "properties": {
                        "AREA_SHORT_CODE": sc,
                        "AREA_NAME": f"{names[order[code - 1]]} ({sc})",
                    },
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": _rect(pts, xa[start], ya[j], xa[start + r], ya[j + 1]),
                    },
                }
            )
            start += r
    divs: list[dict[str, Any]] = []
    for band, pair in enumerate(_DIVISION_GRID):
        j0, j1 = 2 * band, 2 * band + 2
        for side, name in enumerate(pair):
            i0, i1 = (0, _DIVISION_SPLIT_COL) if side == 0 else (_DIVISION_SPLIT_COL, _N_COLS)
            divs.append(
                {
                    "type": "Feature",
                    "properties": {"DIVISION": name},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": _rect(pts, xa[i0], ya[j0], xa[i1], ya[j1]),
                    },
                }
            )
    return (
        {"type": "FeatureCollection", "features": hoods},
        {"type": "FeatureCollection", "features": divs},
    )
