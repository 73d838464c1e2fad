"""Tests for the seeded synthetic city and records (determinism, shapes, shares, geometry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from release.synth import City, demo_city, synth_crimes, synth_use_of_force, write_records
from release.synth.records import CRIME_COLUMNS, UOF_COLUMNS

N = 20_000


@pytest.fixture(scope="module")
def city() -> City:
    return demo_city()


@pytest.fixture(scope="module")
def crimes(city: City) -> pd.DataFrame:
    return synth_crimes(N, city)


@pytest.fixture(scope="module")
def uof() -> pd.DataFrame:
    return synth_use_of_force(5_000)


def test_city_is_deterministic(city: City) -> None:
    again = demo_city()
    pd.testing.assert_frame_equal(city.nodes, again.nodes)
    pd.testing.assert_frame_equal(city.addresses, again.addresses)
    assert city.streets == again.streets
    assert city.neighbourhoods == again.neighbourhoods
    assert city.divisions == again.divisions
    assert not demo_city(8).nodes.equals(city.nodes)


def test_city_sizes_and_address_counts(city: City) -> None:
    assert 4_000 <= len(city.nodes) <= 8_000
    assert 60_000 <= len(city.addresses) <= 100_000
    assert city.nodes["node_id"].is_unique and city.addresses["address_id"].is_unique
    assert city.nodes["address_count"].dtype == np.int64
    assert city.nodes["address_count"].sum() == len(city.addresses)
    assert (city.nodes["address_count"] < 5).sum() > 0
    assert (city.nodes["address_count"] > 50).sum() > 0
    assert list(city.nodes.columns) == ["node_id", "lat", "lon", "address_count"]
    assert (
        city.nodes["lat"].between(43.6, 43.8).all()
        and city.nodes["lon"].between(-79.5, -79.3).all()
    )


def test_streets_end_on_nodes(city: City) -> None:
    feats = city.streets["features"]
    assert {f["geometry"]["type"] for f in feats} == {"LineString"}
    assert {f["properties"]["kind"] for f in feats} == {"arterial", "local"}
    ends = [
        tuple(c)
        for f in feats
        for c in (f["geometry"]["coordinates"][0], f["geometry"]["coordinates"][-1])
    ]
    end_counts = pd.Series(ends).value_counts()
    node_pts = set(zip(city.nodes["lon"], city.nodes["lat"], strict=True))
    # Nodes are exactly the points where 3+ segment ends meet.
    assert set(end_counts[end_counts >= 3].index) == node_pts
    both = sum(
        (tuple(f["geometry"]["coordinates"][0]) in node_pts)
        and (tuple(f["geometry"]["coordinates"][-1]) in node_pts)
        for f in feats
    )
    assert both / len(feats) > 0.8
    # Some dead ends exist (segment ends touching nothing else).
    assert (end_counts == 1).sum() > 0


def test_areas_tile_city(city: City) -> None:
    hoods = city.neighbourhoods["features"]
    assert 20 <= len(hoods) <= 30
    codes = [f["properties"]["AREA_SHORT_CODE"] for f in hoods]
    assert len(set(codes)) == len(codes)
    assert all(
        f["properties"]["AREA_NAME"].endswith(f"({f['properties']['AREA_SHORT_CODE']})")
        for f in hoods
    )
    polys = [shapely.geometry.shape(f["geometry"]) for f in hoods]
    lon, lat = city.nodes["lon"].to_numpy(), city.nodes["lat"].to_numpy()
    covered = np.sum([shapely.intersects_xy(p, lon, lat) for p in polys], axis=0)
    assert (covered >= 1).all()
    divs = city.divisions["features"]
    assert sorted(d["properties"]["DIVISION"] for d in divs) == [
        "D11",
        "D12",
        "D14",
        "D22",
        "D31",
        "D51",
    ]
    union = shapely.union_all([shapely.geometry.shape(d["geometry"]) for d in divs])
    assert abs(union.area - shapely.union_all(polys).area) / union.area < 1e-6


def test_city_write(tmp_path: Path, city: City) -> None:
    city.write(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        "nodes.csv",
        "addresses.csv",
        "streets.geojson",
        "neighbourhoods.geojson",
        "divisions.geojson",
    }
    assert len(pd.read_csv(tmp_path / "nodes.csv")) == len(city.nodes)


def test_crimes_shape_and_ids(crimes: pd.DataFrame) -> None:
    assert len(crimes) == N
    assert list(crimes.columns) == CRIME_COLUMNS
    assert crimes["record_id"].is_unique
    assert crimes["record_id"].iloc[0] == "R0000001"
    per_event = crimes.groupby("event_unique_id").size()
    assert per_event.max() <= 3 and (per_event > 1).any()
    assert crimes["event_unique_id"].str.match(r"^GO-20\d{2}\d{7}$").all()
    # Rows of one event share time and place.
    assert (crimes.groupby("event_unique_id")["occurrence_datetime"].nunique() == 1).all()


def test_crimes_deterministic(city: City, crimes: pd.DataFrame, tmp_path: Path) -> None:
    again = synth_crimes(N, city)
    pd.testing.assert_frame_equal(crimes, again)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_records(crimes, a)
    write_records(again, b)
    assert a.read_bytes() == b.read_bytes()
    assert not synth_crimes(500, city, seed=12).equals(synth_crimes(500, city))


def test_mci_shares(crimes: pd.DataFrame) -> None:
    target = {
        "Assault": 0.52,
        "Break and Enter": 0.19,
        "Auto Theft": 0.15,
        "Robbery": 0.07,
        "Theft Over": 0.04,
        "Sexual Violation": 0.03,
    }
    shares = crimes["mci_category"].value_counts(normalize=True)
    for cat, p in target.items():
        assert abs(shares[cat] - p) < 0.02, cat


def test_crime_times(crimes: pd.DataFrame) -> None:
    occ = pd.to_datetime(crimes["occurrence_datetime"], format="%Y-%m-%dT%H:%M:%S")
    rep = pd.to_datetime(crimes["report_datetime"], format="%Y-%m-%dT%H:%M:%S")
    assert (rep >= occ).all()
    assert occ.min() >= pd.Timestamp("2023-01-01") and occ.max() < pd.Timestamp("2026-01-01")
    assert (rep.dt.date == occ.dt.date).mean() > 0.5
    hours = occ.dt.hour.value_counts().sort_index()
    assert hours.loc[17:22].mean() > 2 * hours.loc[3:6].mean()


def test_crime_points_in_their_neighbourhood(city: City, crimes: pd.DataFrame) -> None:
    lat, lon = crimes["latitude"], crimes["longitude"]
    nsa = lat.isna() | ((lat == 0) & (lon == 0))
    assert 0.005 < nsa.mean() < 0.03
    assert (crimes.loc[nsa, ["division", "hood_id", "neighbourhood"]] == "NSA").all().all()
    placed = crimes[~nsa]
    assert not (placed[["division", "hood_id", "neighbourhood"]] == "NSA").any().any()
    x, y = placed["longitude"].to_numpy(), placed["latitude"].to_numpy()
    for f in city.neighbourhoods["features"]:
        poly = shapely.geometry.shape(f["geometry"])
        inside = shapely.intersects_xy(poly, x, y)
        claimed = (placed["hood_id"] == f["properties"]["AREA_SHORT_CODE"]).to_numpy()
        assert inside[claimed].all()
        assert (placed.loc[claimed, "neighbourhood"] == f["properties"]["AREA_NAME"]).all()
    for d in city.divisions["features"]:
        poly = shapely.geometry.shape(d["geometry"])
        claimed = (placed["division"] == d["properties"]["DIVISION"]).to_numpy()
        assert shapely.intersects_xy(poly, x[claimed], y[claimed]).all()


def test_crime_persons(crimes: pd.DataFrame) -> None:
    counts = crimes["victim_person_id"].value_counts()
    assert counts.max() >= 20  # a repeat victim
    assert (counts == 1).mean() > 0.5  # most people appear once
    # A person's identifiers are consistent wherever they appear.
    assert (
        (
            crimes.groupby("victim_person_id")[
                ["victim_name", "victim_dob", "victim_phone"]
            ].nunique()
            == 1
        )
        .all()
        .all()
    )
    null_acc = crimes["accused_person_id"].isna()
    assert 0.35 < null_acc.mean() < 0.45
    assert (crimes["accused_name"].isna() == null_acc).all()
    assert 0.01 < crimes["unfounded"].mean() < 0.03


def test_use_of_force(uof: pd.DataFrame, tmp_path: Path) -> None:
    assert len(uof) == 5_000
    assert list(uof.columns) == UOF_COLUMNS
    assert uof["record_id"].is_unique
    assert uof["incident_id"].nunique() < len(uof)
    assert uof["person_id"].nunique() < len(uof)
    pd.testing.assert_frame_equal(uof, synth_use_of_force(5_000))
    race = uof["perceived_race"].value_counts(normalize=True)
    assert abs(race["Black"] - 0.32) < 0.03 and abs(race["White"] - 0.33) < 0.03
    assert uof["gender"].value_counts().index[0] == "Man"
    assert set(uof["age_group"]) <= {
        "Under 18",
        "18 to 24",
        "25 to 34",
        "35 to 44",
        "45 to 54",
        "55 to 64",
        "65 and older",
    }
    assert 0.75 < uof["arrest"].mean() < 0.85 and 0.03 < uof["strip_search"].mean() < 0.07
    path = tmp_path / "uof.parquet"
    write_records(uof, path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), uof, check_dtype=False)
