"""Geomask speed: snap 1M points to 50k nodes vs bare scipy cKDTree.query; donut vs maskmypy's donut."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

N_POINTS = int(os.environ.get("BENCH_GEOMASK_POINTS", 1_000_000))
N_NODES = int(os.environ.get("BENCH_GEOMASK_NODES", 50_000))
MASKMYPY_SAMPLE = int(os.environ.get("BENCH_GEOMASK_MASKMYPY", 20_000))
REPEATS = 3


def _best(fn: Callable[[], Any], repeats: int = REPEATS) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _policy(steps: list[dict[str, Any]], series: dict[str, Any] | None = None) -> Any:
    from release.policy.models import Policy

    # Donut offsets are keyed per record by the registered source (docs/series.md): a benchmark secret.
    os.environ.setdefault("BENCH_MASK_KEY", "benchmark-mask-secret-0123456789")
    return Policy.model_validate({
        "series": series or {"source": "bench-records", "secret_env": "BENCH_MASK_KEY"},
        "dataset": {"name": "bench", "title": "bench", "publisher": "bench"},
        "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86], "crs": 2952},
        "input": {"record_id": "record_id", "columns": {
            "record_id": {"type": "string", "role": "record-id"},
            "hood": {"type": "string", "role": "area"},
            "latitude": {"type": "float", "role": "latitude"},
            "longitude": {"type": "float", "role": "longitude"}}},
        "steps": steps,
        "outputs": [{"name": "o", "kind": "records", "columns": ["latitude", "longitude"]}],
    })


def _ctx(policy: Any, options: dict[str, Any]) -> Any:
    from release.context import StepContext

    return StepContext(policy=policy, policy_path=None, schema=dict(policy.input.columns), release_id="bench",
                       now=datetime.now(UTC), options=options)


def main() -> None:
    from release.geomask.network import NetworkConfig, load_network
    from release.geomask.projection import projector_for
    from release.geomask.snap import snap_xy

    # Synthetic data only here (seeded numpy is fine in benchmarks): nodes and points over Toronto.
    rng = np.random.default_rng(0)
    policy = _policy([{"type": "geomask-snap"}])
    proj = projector_for(policy.jurisdiction)
    node_lat = rng.uniform(43.60, 43.84, N_NODES).round(7)
    node_lon = rng.uniform(-79.62, -79.13, N_NODES).round(7)
    lat = rng.uniform(43.60, 43.84, N_POINTS)
    lon = rng.uniform(-79.62, -79.13, N_POINTS)
    tmp = Path(tempfile.mkdtemp(prefix="bench-geomask-"))
    nodes_csv = tmp / "nodes.csv"
    pd.DataFrame({"node_id": [f"N{i}" for i in range(N_NODES)], "lat": node_lat, "lon": node_lon}).to_csv(nodes_csv, index=False)
    t_load = time.perf_counter()
    net = load_network(nodes_csv, None, None, NetworkConfig(count_column=None), policy.jurisdiction, proj)
    net.tree()
    t_load = time.perf_counter() - t_load
    eligible = np.ones(len(net), dtype=bool)

    # Peer: scipy's KD-tree queried on arrays already in metres (no projection, no bookkeeping).
    px, py = proj.to_metric(lon, lat)
    pts = np.column_stack([px, py])
    bare_tree = cKDTree(np.column_stack([net.x, net.y]))
    t_bare, (_, bare_idx) = _best(lambda: bare_tree.query(pts))

    def engine_core() -> Any:
        x, y = proj.to_metric(lon, lat)
        return snap_xy(net, x, y, eligible, None, cache_key="bench")

    t_core, res = _best(engine_core)
    assert (res.node == bare_idx).mean() > 0.9999, "engine and scipy disagree on the nearest node"
    frame = pd.DataFrame({"record_id": np.arange(N_POINTS).astype(str), "hood": "A", "latitude": lat, "longitude": lon})
    step = policy.steps[0]
    ctx = _ctx(policy, {"network": str(nodes_csv)})
    t_step, (out, ev) = _best(lambda: step.apply(frame, ctx), repeats=2)
    assert out["latitude"].notna().all()

    # Donut: the engine's step (projection in and out, secure randomness, bounds verified) vs maskmypy.
    dpol = _policy([{"type": "geomask-donut", "min_distance": 50, "max_distance": 250}])
    dstep = dpol.steps[0]
    t_donut, (dout, dev) = _best(lambda: dstep.apply(frame, _ctx(dpol, {})), repeats=2)
    assert dev["bounds_verified"]
    # The same step drawing fresh offsets (a declared one-off release): the cost of keying per record.
    opol = _policy([{"type": "geomask-donut", "min_distance": 50, "max_distance": 250}], {"one_off": True})
    t_once, _ = _best(lambda: opol.steps[0].apply(frame, _ctx(opol, {})), repeats=2)
    mm_line = None
    try:
        import geopandas as gpd
        from maskmypy import donut as mm_donut

        sub = min(MASKMYPY_SAMPLE, N_POINTS)
        gdf = gpd.GeoDataFrame({"id": np.arange(sub)}, geometry=gpd.points_from_xy(px[:sub], py[:sub]), crs="EPSG:2952")
        t_mm, _ = _best(lambda: mm_donut(gdf, low=50, high=250), repeats=1)
        t_mm_scaled = t_mm * N_POINTS / sub
        mm_line = (t_mm, sub, t_mm_scaled)
    except ImportError as e:  # pragma: no cover - the peer is optional
        print(f"maskmypy not installed ({e}); skipping its donut")

    rows = [
        ("network load: 50k nodes CSV + KD-tree", t_load, None),
        (f"scipy cKDTree.query, {N_POINTS:,} pre-projected points (peer)", t_bare, 1.0),
        ("engine snap: project (pyproj) + nearest node, same points", t_core, t_core / t_bare),
        ("engine geomask-snap step (frame in, frame out, evidence)", t_step, t_step / t_bare),
        (f"engine geomask-donut step (keyed per record), {N_POINTS:,} points", t_donut, t_donut / t_once),
        (f"engine geomask-donut step (one-off: os.urandom), {N_POINTS:,} points", t_once, 1.0),
    ]
    if mm_line:
        rows.append((f"maskmypy donut, {mm_line[1]:,} points (measured)", mm_line[0], None))
        rows.append((f"maskmypy donut, {N_POINTS:,} points (scaled)", mm_line[2], mm_line[2] / t_donut))
    print(f"{N_POINTS:,} points, {N_NODES:,} nodes, EPSG:2952, {os.cpu_count()} cores")
    print(f"{'what':<66} {'seconds':>9} {'ratio':>9}")
    for name, t, ratio in rows:
        print(f"{name:<66} {t:>9.3f} {'' if ratio is None else f'{ratio:>8.2f}x':>9}")
    print(f"snap ratio engine/scipy (projection included): {t_core / t_bare:.2f} (target <= 1.5)")
    if mm_line:
        print(f"donut speed-up engine vs maskmypy: {mm_line[2] / t_donut:.0f}x")


if __name__ == "__main__":
    main()
