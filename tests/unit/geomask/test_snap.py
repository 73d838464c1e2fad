"""geomask-snap: nearest eligible node (brute force on small inputs), min_addresses, within, NSA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.geomask.network import Network, coord_keys
from release.geomask.projection import projector_for
from release.geomask.snap import snap_xy

from .helpers import ctx, grid_network, policy, records, square_layer

P = projector_for(policy().jurisdiction)
X0, Y0 = P.to_metric(np.array([-79.40, -79.40]), np.array([43.70, 43.70]))


def _net(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> Network:
    lon, lat = P.to_degrees(x, y)
    return Network(ids=np.array([f"N{i}" for i in range(len(x))], dtype=object), lat=lat, lon=lon, x=x, y=y,
                   counts=counts, manifest={}, projector=P)


coords = st.floats(min_value=0, max_value=2000, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(st.tuples(coords, coords, st.integers(0, 20), st.sampled_from("AB")), min_size=1, max_size=25),
       points=st.lists(st.tuples(coords, coords, st.sampled_from("AB")), min_size=1, max_size=25),
       min_addresses=st.one_of(st.none(), st.integers(1, 15)),
       within=st.booleans(),
       max_distance=st.one_of(st.none(), st.floats(50, 1500)))
def test_every_point_goes_to_the_nearest_eligible_node(nodes, points, min_addresses, within, max_distance) -> None:
    nx = X0[0] + np.array([n[0] for n in nodes])
    ny = Y0[0] + np.array([n[1] for n in nodes])
    counts = np.array([n[2] for n in nodes])
    n_area = np.array([n[3] for n in nodes], dtype=object)
    px = X0[0] + np.array([p[0] for p in points])
    py = Y0[0] + np.array([p[1] for p in points])
    p_area = np.array([p[2] for p in points], dtype=object)
    net = _net(nx, ny, counts)
    eligible = net.eligible(min_addresses)
    pairs = (np.arange(len(nodes)), n_area) if within else None
    res = snap_xy(net, px, py, eligible, max_distance, p_area if within else None, pairs)
    d = np.hypot(px[:, None] - nx[None, :], py[:, None] - ny[None, :])
    allowed = eligible[None, :] & ((n_area[None, :] == p_area[:, None]) if within else True)
    best = np.where(allowed, d, np.inf).min(axis=1)
    for i in range(len(points)):
        if not np.isfinite(best[i]) or (max_distance is not None and best[i] > max_distance):
            assert res.node[i] == -1 and res.reason[i] in ("no-eligible-node-in-area", "beyond-max-distance")
            continue
        k = res.node[i]
        assert k >= 0
        assert eligible[k], "snapped to a node below min_addresses"
        if min_addresses is not None:
            assert counts[k] >= min_addresses
        if within:
            assert n_area[k] == p_area[i], "snapped across the area boundary"
        assert abs(d[i, k] - best[i]) < 1e-6
        assert abs(res.distance[i] - best[i]) < 1e-6


def test_step_publishes_node_coordinates_and_nsa_for_unusable_points(tmp_path: Path) -> None:
    counts = np.full(36, 10)
    counts[0] = 2  # the corner node serves 2 addresses: never used with min_addresses 5
    path, nodes = grid_network(tmp_path, n=6, counts=counts)
    lat0, lon0 = nodes.lat[0], nodes.lon[0]
    lat = np.array([lat0 + 0.00005, nodes.lat[7] + 0.0001, np.nan, 0.0, 45.5, lat0 + 0.05])
    lon = np.array([lon0 + 0.00005, nodes.lon[7], np.nan, 0.0, -79.4, lon0])
    frame = records(lat, lon, hood=["A"] * 6)
    pol = policy([{"type": "geomask-snap", "min_addresses": 5, "max_distance": 400}])
    step = pol.steps[0]
    out, ev = step.apply(frame, ctx(pol, {"network": str(path)}))
    keys = coord_keys(out.latitude.to_numpy(), out.longitude.to_numpy())
    node_keys = coord_keys(nodes.lat.to_numpy(), nodes.lon.to_numpy())
    assert keys[0] in set(node_keys[counts >= 5]) and keys[0] != node_keys[0]
    assert keys[1] == node_keys[7]
    assert out.latitude[2:].isna().all() and out.longitude[2:].isna().all()
    assert list(out.hood) == ["A", "A", "NSA", "NSA", "NSA", "NSA"]
    assert ev["nsa"]["reasons"] == {"not-geocoded": 2, "outside-jurisdiction": 1, "beyond-max-distance": 1}
    assert ev["min_addresses_per_node"] >= 5 and ev["share_records_below"]["5"] == 0.0
    assert ev["displacement_m"]["max"] < 150
    assert ev["distinct_points"] == 2


def test_within_a_polygon_layer_keeps_the_record_in_its_area(tmp_path: Path) -> None:
    path, nodes = grid_network(tmp_path, n=6)
    mid = float(np.sort(nodes.lon.unique())[2]) + 0.0005  # the A/B boundary runs between grid columns 2 and 3
    layer = square_layer(tmp_path, {"A": (-79.5, 43.6, mid, 43.8), "B": (mid, 43.6, -79.3, 43.8)})
    # A point just east of the boundary but recorded in A must go to a node in A.
    lat = np.array([nodes.lat[3]] * 2)
    lon = np.array([mid + 0.0001] * 2)
    frame = records(lat, lon, hood=["A", "B"])
    steps = [{"type": "geomask-snap", "within": {"column": "hood", "areas": {"layer": "hoods", "property": "code"}}}]
    pol = policy(steps)
    out, ev = pol.steps[0].apply(frame, ctx(pol, {"network": str(path), "hoods": str(layer)}))
    assert out.longitude[0] < mid < out.longitude[1]
    assert ev["area_changed"] == 0
    # Without `within` both go to the same (nearest) node, across the boundary for one of them.
    pol2 = policy([{"type": "geomask-snap", "measure_area": steps[0]["within"]}])
    out2, ev2 = pol2.steps[0].apply(frame, ctx(pol2, {"network": str(path), "hoods": str(layer)}))
    assert out2.longitude[0] == out2.longitude[1]
    assert ev2["area_changed"] == 1  # the evidence counts the record snapped out of its area


def test_min_addresses_without_counts_is_a_usage_error(tmp_path: Path) -> None:
    from release.errors import UsageError

    path, nodes = grid_network(tmp_path, n=3)
    nodes.drop(columns=["address_count"]).to_csv(path, index=False)
    pol = policy([{"type": "geomask-snap", "min_addresses": 8}])
    with pytest.raises(UsageError, match="no address counts"):
        pol.steps[0].apply(records(nodes.lat, nodes.lon), ctx(pol, {"network": str(path)}))


def test_snap_is_vectorized_over_areas_not_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One KD-tree query per area: 2,000 records in 2 areas make 2 queries."""
    from scipy.spatial import cKDTree

    import release.geomask.snap as snap_mod

    calls = []

    class Spy(cKDTree):
        def query(self, x, *a, **k):  # type: ignore[no-untyped-def]
            calls.append(len(x))
            return super().query(x, *a, **k)

    monkeypatch.setattr(snap_mod, "cKDTree", Spy)
    path, nodes = grid_network(tmp_path, n=6)
    rng = np.random.default_rng(0)
    n = 2000
    frame = records(rng.uniform(nodes.lat.min(), nodes.lat.max(), n), rng.uniform(nodes.lon.min(), nodes.lon.max(), n),
                    hood=list(rng.choice(["A", "B"], n)))
    attrs = nodes.assign(area=np.where(np.arange(36) % 2 == 0, "A", "B"))
    attrs.to_csv(path, index=False)
    pol = policy([{"type": "geomask-snap", "within": {"column": "hood", "node_column": "area"}}])
    out, _ = pol.steps[0].apply(frame, ctx(pol, {"network": str(path)}))
    assert sorted(calls) == sorted(pd.Series(frame.hood).value_counts().to_list())
    assert out.latitude.notna().all()
