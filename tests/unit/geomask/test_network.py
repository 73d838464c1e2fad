"""Networks: node files in three formats, nodes derived from centrelines, address counts, bad networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from release.errors import InputError, PolicyError
from release.geomask.network import NetworkConfig, coord_keys, derive_nodes, load_network
from release.geomask.projection import projector_for
from release.policy.models import Jurisdiction

from .helpers import BBOX, grid_network, policy

J = Jurisdiction(bbox=tuple(BBOX), crs=2952)
P = projector_for(J)


def _load(nodes: Path | None = None, streets: Path | None = None, addresses: Path | None = None,
          cfg: NetworkConfig | None = None):
    return load_network(nodes, streets, addresses, cfg or NetworkConfig(), J, P)


def test_csv_parquet_and_geojson_nodes_load_the_same(tmp_path: Path) -> None:
    path, frame = grid_network(tmp_path, n=3)
    pq = tmp_path / "nodes.parquet"
    frame.to_parquet(pq)
    gj = tmp_path / "nodes.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"node_id": r.node_id, "address_count": int(r.address_count)},
         "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]}} for r in frame.itertuples()]}))
    nets = [_load(p) for p in (path, pq, gj)]
    for net in nets:
        assert len(net) == 9
        assert list(net.ids) == list(frame.node_id)
        np.testing.assert_array_equal(net.keys(), coord_keys(frame.lat.to_numpy(), frame.lon.to_numpy()))
        np.testing.assert_array_equal(net.counts, np.full(9, 10))
    # Metric: neighbours on the grid are 100 m apart (degrees would give ~0.001).
    assert abs(np.hypot(nets[0].x[1] - nets[0].x[0], nets[0].y[1] - nets[0].y[0]) - 100.0) < 0.01
    assert nets[0].manifest["sha256"] != nets[1].manifest["sha256"]


def test_address_points_are_counted_at_their_nearest_node(tmp_path: Path) -> None:
    path, frame = grid_network(tmp_path, n=3, counts=np.zeros(9, dtype=int))
    rng = np.random.default_rng(3)
    lat = rng.uniform(frame.lat.min(), frame.lat.max(), 500)
    lon = rng.uniform(frame.lon.min(), frame.lon.max(), 500)
    addr = tmp_path / "addresses.csv"
    pd.DataFrame({"latitude": lat, "longitude": lon}).to_csv(addr, index=False)
    net = _load(path, addresses=addr)
    ax, ay = P.to_metric(lon, lat)
    brute = np.argmin(np.hypot(ax[:, None] - net.x[None, :], ay[:, None] - net.y[None, :]), axis=1)
    np.testing.assert_array_equal(net.counts, np.bincount(brute, minlength=9))
    assert net.manifest["addresses"]["count"] == 500


def _streets(tmp: Path, lines: list[list[tuple[float, float]]]) -> Path:
    p = tmp / "streets.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [list(c) for c in ln]}}
        for ln in lines]}))
    return p


def test_nodes_derived_where_three_ends_meet_or_two_turn(tmp_path: Path) -> None:
    c = (-79.40, 43.70)
    e, n_, w = (-79.399, 43.70), (-79.40, 43.701), (-79.401, 43.70)
    bend_a, bend_b = (-79.390, 43.70), (-79.390, 43.701)
    lines = [[c, e], [c, n_], [c, w],  # a T junction at c (3 ends)
             [e, bend_a], [bend_a, bend_b],  # e continues straight east (2 ends, no turn), bends 90 deg at bend_a
             ]
    path = _streets(tmp_path, lines)
    plain = derive_nodes(path, P, None)
    assert set(zip(plain.lat, plain.lon, strict=True)) == {(43.70, -79.40)}
    bent = derive_nodes(path, P, 30.0)
    assert set(zip(bent.lat, bent.lon, strict=True)) == {(43.70, -79.40), (43.70, -79.39)}
    # A network file that holds centrelines is recognised and derived too.
    net = _load(path)
    assert len(net) == 1 and net.manifest["source"] == "streets"


@pytest.mark.parametrize(("frame", "expect"), [
    (pd.DataFrame({"node_id": [], "lat": [], "lon": []}), "holds no nodes"),
    (pd.DataFrame({"node_id": ["a", "a", "b"], "lat": [43.7] * 3, "lon": [-79.4, -79.41, -79.42]}),
     "[duplicate-node-id] column 'node_id': node id is not unique in rows 1, 2"),
    (pd.DataFrame({"node_id": ["a", "b"], "lat": [43.7, 45.0], "lon": [-79.4, -79.4]}),
     "[node-outside-jurisdiction] columns lat/lon: node outside the jurisdiction's bbox"),
    (pd.DataFrame({"node_id": ["a", "b"], "lat": [43.7, None], "lon": [-79.4, -79.4]}),
     "[node-coordinates] columns lat/lon: missing or not numeric in rows 2"),
])
def test_bad_networks_are_input_errors_naming_the_rule_and_rows(tmp_path: Path, frame: pd.DataFrame, expect: str) -> None:
    p = tmp_path / "bad.csv"
    frame.to_csv(p, index=False)
    with pytest.raises(InputError) as ei:
        _load(p)
    text = ei.value.render()
    assert str(p) in text and expect in text


@pytest.mark.parametrize(("crs", "expect"), [
    (999999, "jurisdiction.crs: EPSG:999999 cannot be built"),
    (4326, "jurisdiction.crs: EPSG:4326 is not a projected (metric) CRS"),
    (2263, "is in US survey foot, not metres"),
])
def test_crs_that_cannot_serve_distances_is_a_policy_error(crs: int, expect: str) -> None:
    with pytest.raises(PolicyError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        projector_for(Jurisdiction(bbox=tuple(BBOX), crs=crs))


def test_utm_zone_is_chosen_from_the_jurisdiction_when_no_crs() -> None:
    p = projector_for(policy(crs=None).jurisdiction)
    assert p.name == "EPSG:32617"  # Toronto lies in UTM zone 17N
    x, y = p.to_metric(np.array([-79.40, -79.40]), np.array([43.70, 43.71]))
    assert abs(np.hypot(x[1] - x[0], y[1] - y[0]) - 1111.9) < 5  # 0.01 degree of latitude
