"""geomask-donut (annulus, secure randomness, spatial k, keep-inside), geomask-area, withhold-location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from release.geomask.common import uniforms
from release.geomask.donut import annulus
from release.geomask.projection import projector_for

from .helpers import ctx, grid_network, policy, records, square_layer

P = projector_for(policy().jurisdiction)


def _points(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return records(rng.uniform(43.66, 43.74, n), rng.uniform(-79.45, -79.35, n))


def _displacement(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    x0, y0 = P.to_metric(a.longitude.to_numpy(), a.latitude.to_numpy())
    x1, y1 = P.to_metric(b.longitude.to_numpy(), b.latitude.to_numpy())
    return np.hypot(x1 - x0, y1 - y0)


def test_uniforms_come_from_os_urandom_unless_a_test_seed_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    pol = policy()
    a = uniforms(1000, ctx(pol, seed=None), "x")
    b = uniforms(1000, ctx(pol, seed=None), "x")
    assert not np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 1
    np.testing.assert_array_equal(uniforms(50, ctx(pol, seed=7), "x"), uniforms(50, ctx(pol, seed=7), "x"))
    assert not np.array_equal(uniforms(50, ctx(pol, seed=7), "x"), uniforms(50, ctx(pol, seed=8), "x"))
    seen = []
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: seen.append(n) or real(n))
    uniforms(10, ctx(pol, seed=None), "x")
    assert seen == [80]


def test_annulus_is_uniform_over_its_area() -> None:
    pol = policy()
    u = uniforms(40000, ctx(pol, seed=3), "a")
    dx, dy = annulus(u[:20000], u[20000:], 50.0, 200.0)
    r = np.hypot(dx, dy)
    assert r.min() >= 50.0 and r.max() <= 200.0
    # Uniform over the area: (r^2 - r0^2) / (R^2 - r0^2) is uniform on [0, 1]; angles uniform too.
    area_share = (r**2 - 50.0**2) / (200.0**2 - 50.0**2)
    assert stats.kstest(area_share, "uniform").pvalue > 0.001
    assert stats.kstest((np.arctan2(dy, dx) + np.pi) / (2 * np.pi), "uniform").pvalue > 0.001


@settings(max_examples=25, deadline=None)
@given(lo=st.floats(0, 300), width=st.floats(1, 500), seed=st.integers(0, 2**31))
def test_every_displacement_lies_within_the_bounds(lo: float, width: float, seed: int) -> None:
    pol = policy([{"type": "geomask-donut", "min_distance": lo, "max_distance": lo + width}])
    frame = _points(60, seed % 1000)
    out, ev = pol.steps[0].apply(frame, ctx(pol, seed=seed))
    d = _displacement(frame, out)
    assert (d >= lo - 0.05).all() and (d <= lo + width + 0.05).all()
    assert ev["bounds_verified"] is True and ev["displaced"] == 60


def test_donut_widens_to_reach_the_target_spatial_k(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    # 400 addresses in a dense cluster; a point far from it needs a wide radius to cover 20 of them.
    addr = tmp_path / "addresses.csv"
    pd.DataFrame({"lat": 43.70 + rng.normal(0, 0.0005, 400), "lon": -79.40 + rng.normal(0, 0.0005, 400)}).to_csv(addr, index=False)
    frame = records(np.array([43.70, 43.72]), np.array([-79.40, -79.40]))
    pol = policy([{"type": "geomask-donut", "min_distance": 10, "max_distance": 100, "target_k": 20,
                   "max_widened": 5000}])
    out, ev = pol.steps[0].apply(frame, ctx(pol, {"addresses": str(addr)}))
    d = _displacement(frame, out)
    assert ev["widened"] == 1  # the far point only
    assert d[0] <= 100.05 and 10 <= d[1] <= 5000.05
    assert ev["max_radius_m"] > 2000  # 0.02 degrees of latitude is about 2.2 km from the cluster


def test_donut_keeps_points_inside_their_area_or_falls_back(tmp_path: Path) -> None:
    layer = square_layer(tmp_path, {"A": (-79.45, 43.65, -79.40, 43.75), "B": (-79.40, 43.65, -79.35, 43.75)})
    n = 300
    rng = np.random.default_rng(2)
    lon = -79.40 - rng.uniform(0.0002, 0.002, n)  # all in A, close to the A/B edge
    frame = records(np.full(n, 43.70), lon, hood=["A"] * n)
    steps = [{"type": "geomask-donut", "min_distance": 50, "max_distance": 300,
              "within": {"column": "hood", "areas": {"layer": "hoods", "property": "code"}}, "max_redraws": 30}]
    pol = policy(steps)
    out, ev = pol.steps[0].apply(frame, ctx(pol, {"hoods": str(layer)}))
    have = out.longitude.notna()
    assert (out.longitude[have] < -79.40).all()
    assert ev["redraws"] > 0 and ev["area_changed"] == 0
    assert ev["withheld"] == int((~have).sum())
    # Without `within`, measure_area counts the points displaced out of their area.
    polm = policy([{"type": "geomask-donut", "min_distance": 50, "max_distance": 300, "measure_area": steps[0]["within"]}])
    outm, evm = polm.steps[0].apply(frame, ctx(polm, {"hoods": str(layer)}))
    assert evm["area_changed"] == int((outm.longitude > -79.40).sum()) > 0
    # With no redraws allowed some points fall back and are withheld (their area is kept).
    pol0 = policy([{**steps[0], "max_redraws": 0}])
    out0, ev0 = pol0.steps[0].apply(frame, ctx(pol0, {"hoods": str(layer)}))
    assert ev0["withheld"] > 0 and (out0.hood == "A").all()
    assert (out0.longitude.dropna() < -79.40).all()


def test_donut_bounds_are_validated_in_the_policy() -> None:
    with pytest.raises(Exception, match="min_distance must be less than max_distance"):
        policy([{"type": "geomask-donut", "min_distance": 300, "max_distance": 100}])


def test_area_step_replaces_points_by_their_area(tmp_path: Path) -> None:
    layer = square_layer(tmp_path, {"A": (-79.45, 43.65, -79.40, 43.75), "B": (-79.40, 43.65, -79.35, 43.75)})
    frame = records(np.array([43.70, 43.70, np.nan, 43.80]), np.array([-79.42, -79.38, np.nan, -79.38]),
                    hood=["A", "A", "A", "B"])
    pol = policy([{"type": "geomask-area", "areas": {"layer": "hoods", "property": "code"}, "column": "hood"}])
    out, ev = pol.steps[0].apply(frame, ctx(pol, {"hoods": str(layer)}))
    assert "latitude" not in out.columns and "longitude" not in out.columns
    assert list(out.hood) == ["A", "B", "NSA", "NSA"]
    assert ev["area_changed"] == 3 and ev["located"] == 2
    # The coordinates are gone from the schema too: an output naming them fails the plan.
    assert "latitude" not in pol.steps[0].schema_after(dict(pol.input.columns))


def test_withhold_removes_coordinates_and_keeps_the_area() -> None:
    frame = records(np.array([43.70, 43.71, 43.72]), np.array([-79.40, -79.41, -79.42]),
                    hood=["A", "B", "C"], offence=["Sexual Assault", "Theft", "Sexual Assault"])
    pol = policy([{"type": "withhold-location", "when": [{"column": "offence", "equals": "Sexual Assault"}],
                   "reason": "sexual offence"}])
    out, ev = pol.steps[0].apply(frame, ctx(pol))
    assert out.latitude.isna().tolist() == [True, False, True]
    assert list(out.hood) == ["A", "B", "C"]
    assert ev["withheld"] == 2 and ev["reason"] == "sexual offence"


def test_steps_need_coordinates_in_the_schema() -> None:
    from release.plan import check_policy_columns

    pol = policy([{"type": "geomask-area", "areas": {"layer": "h", "property": "c"}, "column": "hood"},
                  {"type": "withhold-location", "when": [{"column": "offence", "equals": "x"}], "reason": "r"}])
    problems = check_policy_columns(pol)
    assert problems == [(("steps", 1), "cannot apply to the schema: withhold-location: the schema has no"
                         " latitude/longitude columns to mask")]


def test_donut_fallback_snaps_to_a_node_of_the_records_area(tmp_path: Path) -> None:
    from release.geomask.network import coord_keys

    path, nodes = grid_network(tmp_path, n=6, spacing=50.0, origin=(-79.4021, 43.6990))
    layer = square_layer(tmp_path, {"A": (-79.45, 43.65, -79.40, 43.75), "B": (-79.40, 43.65, -79.35, 43.75)})
    in_a = nodes[nodes.lon < -79.40]
    frame = records(np.full(40, 43.7001), np.full(40, -79.40005), hood=["A"] * 40)
    pol = policy([{"type": "geomask-donut", "min_distance": 400, "max_distance": 500, "max_redraws": 0,
                   "fallback": "snap", "within": {"column": "hood", "areas": {"layer": "hoods", "property": "code"}}}])
    out, ev = pol.steps[0].apply(frame, ctx(pol, {"network": str(path), "hoods": str(layer)}))
    assert out.latitude.notna().all() and ev["withheld"] == 0
    fell = ev["fallback"]["count"]
    assert 0 < fell < 40  # about half the random directions leave A
    keys = coord_keys(out.latitude.to_numpy(), out.longitude.to_numpy())
    on_node = np.isin(keys, coord_keys(in_a.lat.to_numpy(), in_a.lon.to_numpy()))
    assert on_node.sum() == fell and (out.longitude < -79.40).all()
    assert sum(ev["displacement_histogram"]["counts"]) == 40 - fell
