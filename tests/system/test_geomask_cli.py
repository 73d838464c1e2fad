"""Geomasking end to end through the CLI: snap bundles proven by `release check`, tampering and bad networks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from release.cli import main
from release.geomask.network import coord_keys
from release.geomask.projection import projector_for
from release.policy.loader import load_policy
from tests.conftest import POLICIES
from tests.system.report_demo import resign


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from release.synth import demo_city, synth_crimes, write_records

    d = tmp_path_factory.mktemp("city")
    c = demo_city()
    c.write(d / "net")
    write_records(synth_crimes(3000, c), d / "crimes.parquet")
    return {"dir": d, "nodes": d / "net" / "nodes.csv", "addresses": d / "net" / "addresses.csv",
            "hoods": d / "net" / "neighbourhoods.geojson", "crimes": d / "crimes.parquet"}


def _geo_args(city: dict[str, Path]) -> list[str]:
    return ["--network", str(city["nodes"]), "--addresses", str(city["addresses"]),
            "--layer", f"neighbourhoods={city['hoods']}"]


def _run(policy: Path, city: dict[str, Path], out: Path, *extra: str) -> tuple[int, str, Path | None]:
    res = CliRunner().invoke(main, ["run", str(policy), "--input", str(city["crimes"]), "--out", str(out), "-q",
                                    *(extra or _geo_args(city))])
    bundles = [b for d in out.glob("*") if not d.name.startswith(".") for b in d.glob("*") if not b.name.startswith(".")] \
        if out.exists() else []
    return res.exit_code, res.output, (bundles[0] if bundles else None)


def _rehash(bundle: Path, rel: str) -> None:
    """Make the manifest match an edited file, so only the semantic check can find the edit."""
    man = json.loads((bundle / "manifest.json").read_text())
    man["files"][rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(man, indent=2))
    resign(bundle)


def _check(bundle: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["check", "--allow-unapproved", str(bundle), *args])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def snap_bundle(city: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    code, output, bundle = _run(POLICIES / "crime-indicators.yaml", city, out)
    assert code == 0, output
    assert bundle is not None
    return bundle


def test_snap_bundle_reports_location_figures_and_passes_check(snap_bundle: Path, city: dict[str, Path]) -> None:
    report = json.loads((snap_bundle / "report.json").read_text())
    loc = report["outputs"][0]["figures"]["location"]
    assert loc["method"] == "snap"
    assert loc["min_addresses_per_node"] >= 8 and loc["share_records_below"]["5"] == 0.0
    assert loc["area_changed"] == 0
    assert set(loc["displacement_m"]) == {"min", "median", "p95", "max"} and loc["displacement_m"]["max"] <= 1000
    assert loc["distinct_points"] > 100 and loc["records_per_point"]["min"] >= 1 and "units_per_point" in loc
    assert loc["withheld"]["reasons"]["assault at a residence (likely intimate-partner or family violence)"] > 0
    man = json.loads((snap_bundle / "manifest.json").read_text())
    assert man["network"]["sha256"] == hashlib.sha256(city["nodes"].read_bytes()).hexdigest()
    code, output = _check(snap_bundle, *_geo_args(city))
    assert code == 0, output
    assert "ok   [snap-points]" in output and "ok   [snap-within]" in output and "ok   [min-addresses]" in output


def _copy(bundle: Path, tmp: Path) -> Path:
    import shutil

    dst = tmp / "copy" / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def test_a_point_moved_one_metre_fails_the_check_even_rehashed(snap_bundle: Path, city: dict[str, Path],
                                                               tmp_path: Path) -> None:
    b = _copy(snap_bundle, tmp_path)
    t = pd.read_csv(b / "occurrences.csv", dtype=str, keep_default_na=False)
    row = int(np.flatnonzero(t["latitude"] != "")[5])
    # One metre north is 1/111,320 of a degree of latitude.
    t.loc[row, "latitude"] = f"{float(t.loc[row, 'latitude']) + 1 / 111_320:.7f}"
    t.to_csv(b / "occurrences.csv", index=False, lineterminator="\n")
    _rehash(b, "occurrences.csv")
    code, output = _check(b, *_geo_args(city))
    assert code == 1
    assert f"FAIL [snap-points] occurrences occurrences.csv: 1 published point(s) are not nodes of the network (rows {row + 1})" in output
    assert "ok   [hash]" in output  # the manifest matches: only the snap proof caught it


def test_a_withheld_row_given_back_its_point_fails_the_check(snap_bundle: Path, city: dict[str, Path],
                                                            tmp_path: Path) -> None:
    b = _copy(snap_bundle, tmp_path)
    t = pd.read_csv(b / "occurrences.csv", dtype=str, keep_default_na=False)
    nodes = pd.read_csv(city["nodes"])
    node = nodes[nodes.address_count >= 8].iloc[0]
    row = int(np.flatnonzero((t.mci_category == "Assault") & t.premises_type.isin(["House", "Apartment"]))[0])
    t.loc[row, "latitude"], t.loc[row, "longitude"] = f"{node.lat:.7f}", f"{node.lon:.7f}"
    t.to_csv(b / "occurrences.csv", index=False, lineterminator="\n")
    _rehash(b, "occurrences.csv")
    code, output = _check(b, *_geo_args(city))
    assert code == 1
    assert "FAIL [withheld-locations]" in output and f"carry coordinates (rows {row + 1})" in output


def test_check_refuses_a_network_other_than_the_one_snapped_to(snap_bundle: Path, city: dict[str, Path],
                                                               tmp_path: Path) -> None:
    other = tmp_path / "nodes.csv"
    nodes = pd.read_csv(city["nodes"])
    nodes.iloc[:-1].to_csv(other, index=False)
    code, output = _check(snap_bundle, "--network", str(other))
    assert code == 1 and "FAIL [snap-network]" in output and "differs from the manifest" in output


def _policy_variant(tmp: Path, old: str, new: str) -> Path:
    text = (POLICIES / "crime-indicators.yaml").read_text()
    assert old in text
    p = tmp / "policy.yaml"
    p.write_text(text.replace(old, new))
    return p


@pytest.mark.parametrize(("case", "expect"), [
    ("empty", "holds no nodes"),
    ("duplicate", "[duplicate-node-id] column 'node_id': node id is not unique in rows 1, 2"),
    ("outside", "[node-outside-jurisdiction] columns lat/lon: node outside the jurisdiction's bbox"),
    ("crs", "jurisdiction.crs: EPSG:999999 cannot be built as a coordinate reference system"),
])
def test_bad_networks_exit_2_and_publish_nothing(city: dict[str, Path], tmp_path: Path, case: str, expect: str) -> None:
    nodes = pd.read_csv(city["nodes"], dtype={"node_id": str})
    net = tmp_path / "nodes.csv"
    policy = POLICIES / "crime-indicators.yaml"
    if case == "empty":
        nodes.iloc[:0].to_csv(net, index=False)
    elif case == "duplicate":
        nodes.loc[1, "node_id"] = nodes.loc[0, "node_id"]
        nodes.to_csv(net, index=False)
    elif case == "outside":
        nodes.loc[10, "lat"] = 44.5
        nodes.to_csv(net, index=False)
    else:
        nodes.to_csv(net, index=False)
        policy = _policy_variant(tmp_path, "crs: 2952", "crs: 999999")
    out = tmp_path / "out"
    code, output, bundle = _run(policy, city, out, "--network", str(net), "--addresses", str(city["addresses"]),
                                "--layer", f"neighbourhoods={city['hoods']}")
    assert code == 2, output
    assert expect in output
    if case != "crs":
        assert str(net) in output
    assert "Traceback" not in output
    assert bundle is None


def test_shootings_and_hate_crimes_policies_publish_their_masks(city: dict[str, Path], tmp_path: Path) -> None:
    code, output, b = _run(POLICIES / "shootings.yaml", city, tmp_path / "s")
    assert code == 0, output
    t = pd.read_csv(b / "shootings.csv")
    nodes = pd.read_csv(city["nodes"])
    have = t.latitude.notna()
    assert np.isin(coord_keys(t.latitude[have].to_numpy(), t.longitude[have].to_numpy()),
                   coord_keys(nodes.lat.to_numpy(), nodes.lon.to_numpy())).all()
    assert set(t.offence) <= {"Assault With Weapon", "Robbery With Weapon"}
    code, output, b = _run(POLICIES / "hate-crimes.yaml", city, tmp_path / "h")
    assert code == 0, output
    t = pd.read_csv(b / "hate-crimes.csv")
    assert "latitude" not in t.columns and not (b / "hate-crimes.geojson").exists()
    loc = json.loads((b / "report.json").read_text())["outputs"][0]["figures"]["location"]
    assert loc["method"] == "area" and loc["withheld"]["count"] == len(t)
    assert _check(b, *_geo_args(city))[0] == 0


def test_bundled_policies_declare_the_same_input_as_the_synthetic_crimes() -> None:
    import pyarrow.parquet as pq  # noqa: F401 - the demo matches inputs by column set

    cols = set(load_policy(POLICIES / "crime-indicators.yaml").input.columns)
    for name in ("shootings.yaml", "hate-crimes.yaml"):
        assert set(load_policy(POLICIES / name).input.columns) == cols


def test_acceptance_real_tps_points_jittered_150m_snap_back_to_nodes(tps_dir: Path, tmp_path: Path) -> None:
    """Real published TPS points (every one an intersection node): jitter up to 150 m, snap, all on nodes."""
    from release.engine import run_release
    from release.geomask.network import load_areas

    bikes = pd.read_csv(tps_dir / "bicycle_thefts_2014_2017.csv", encoding="utf-8-sig")
    shoot = pd.read_csv(tps_dir / "shootings_2004_2022.csv", encoding="utf-8-sig")
    pts = pd.concat([bikes[["Lat", "Long"]].set_axis(["lat", "lon"], axis=1),
                     shoot[["Latitude", "Longitude"]].set_axis(["lat", "lon"], axis=1)])
    pts = pts[(pts.lat != 0) & (pts.lon != 0)].round(7).drop_duplicates().reset_index(drop=True)
    nodes = pts.assign(node_id=[f"T{i}" for i in range(len(pts))])
    nodes.to_csv(tmp_path / "nodes.csv", index=False)
    proj = projector_for(load_policy(POLICIES / "crime-indicators.yaml").jurisdiction)
    rng = np.random.default_rng(150)
    x, y = proj.to_metric(bikes.Long.to_numpy(), bikes.Lat.to_numpy())
    r = 150 * np.sqrt(rng.random(len(x)))
    th = 2 * np.pi * rng.random(len(x))
    lon, lat = proj.to_degrees(x + r * np.cos(th), y + r * np.sin(th))
    inp = pd.DataFrame({"record_id": bikes.event_unique_id + "-" + bikes.index.astype(str), "hood_id": bikes.Hood_ID.astype(str),
                        "latitude": lat.round(7), "longitude": lon.round(7)})
    inp.to_csv(tmp_path / "in.csv", index=False)
    for within in (False, True):
        pol = {
            "dataset": {"name": f"tps-{int(within)}", "title": "TPS bicycle thefts", "publisher": "test"},
            "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86], "crs": 2952, "outside": "nsa"},
            "input": {"record_id": "record_id", "columns": {
                "record_id": {"type": "string", "role": "record-id"},
                "hood_id": {"type": "string", "role": "area"},
                "latitude": {"type": "float", "role": "latitude", "required": False},
                "longitude": {"type": "float", "role": "longitude", "required": False}}},
            "steps": [{"type": "geomask-snap", **({"within": {"column": "hood_id", "areas": {
                "layer": "neighbourhoods", "property": "AREA_SHORT_CODE"}}} if within else {})}],
            "outputs": [{"name": "thefts", "kind": "records", "columns": ["hood_id", "latitude", "longitude"]}],
            "gate": {"scan_identifiers": False},
        }
        pfile = tmp_path / f"p{int(within)}.yaml"
        pfile.write_text(json.dumps(pol))
        opts = {"network": str(tmp_path / "nodes.csv"), "neighbourhoods": str(tps_dir / "neighbourhoods_140.geojson")}
        res = run_release(pfile, tmp_path / "in.csv", tmp_path / "out", options=opts)
        out = pd.read_csv(res.bundle / "thefts.csv", dtype={"hood_id": str})
        have = out.latitude.notna()
        assert have.mean() > 0.99
        keys = coord_keys(out.latitude[have].to_numpy(), out.longitude[have].to_numpy())
        assert np.isin(keys, coord_keys(nodes.lat.to_numpy(), nodes.lon.to_numpy())).all()
        loc = json.loads((res.bundle / "report.json").read_text())["outputs"][0]["figures"]["location"]
        print(f"within={within}: {int(have.sum())}/{len(out)} snapped, displacement {loc['displacement_m']},"
              f" withheld {loc['withheld']}, area_changed {loc.get('area_changed')}")
        assert loc["displacement_m"]["max"] < 2000 and loc["displacement_m"]["median"] < 150
        if within:
            # Independently: each snapped node lies in (or on the boundary street of) its record's neighbourhood.
            layer = load_areas(tps_dir / "neighbourhoods_140.geojson", "AREA_SHORT_CODE", proj)
            nx, ny = proj.to_metric(out.longitude[have].to_numpy(), out.latitude[have].to_numpy())
            pi, vals = layer.membership(nx, ny, 1.0)
            ok = pd.DataFrame({"i": pi, "v": vals}).merge(
                pd.DataFrame({"i": np.arange(int(have.sum())), "v": out.hood_id[have].to_numpy()}), on=["i", "v"])
            assert ok.i.nunique() == int(have.sum()), "a record changed neighbourhood"
            assert loc["area_changed"] == 0
        from release.check import check_bundle

        assert check_bundle(res.bundle, options={**opts, "allow_unapproved": True}).ok


def test_a_point_moved_in_the_geojson_or_parquet_alone_also_fails(snap_bundle: Path, city: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    b = _copy(snap_bundle, tmp_path)
    gj = json.loads((b / "occurrences.geojson").read_text())
    gj["features"][3]["geometry"]["coordinates"][1] += 1 / 111_320
    (b / "occurrences.geojson").write_text(json.dumps(gj))
    _rehash(b, "occurrences.geojson")
    t = pd.read_parquet(b / "occurrences.parquet")
    row = int(np.flatnonzero(t.latitude.notna())[0])
    t.loc[row, "longitude"] += 1 / 80_000
    t.to_parquet(b / "occurrences.parquet", index=False)
    _rehash(b, "occurrences.parquet")
    code, output = _check(b, *_geo_args(city))
    assert code == 1
    assert "FAIL [snap-points] occurrences occurrences.geojson: 1 published point(s) are not nodes of the network (rows 4)" in output
    assert f"FAIL [snap-points] occurrences occurrences.parquet: 1 published point(s) are not nodes of the network (rows {row + 1})" in output
    assert "ok   [snap-points] occurrences occurrences.csv" in output


def test_a_bad_network_fails_before_any_record_is_read(city: dict[str, Path], tmp_path: Path) -> None:
    net = tmp_path / "nodes.csv"
    pd.read_csv(city["nodes"]).iloc[:0].to_csv(net, index=False)
    res = CliRunner().invoke(main, ["run", str(POLICIES / "crime-indicators.yaml"), "--input", str(tmp_path / "absent.csv"),
                                    "--out", str(tmp_path / "out"), "--network", str(net), "-q"])
    assert res.exit_code == 2
    assert "holds no nodes" in res.output and "absent.csv" not in res.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("manifest.json"))


def test_an_nsa_row_given_a_point_fails_the_check(snap_bundle: Path, city: dict[str, Path], tmp_path: Path) -> None:
    b = _copy(snap_bundle, tmp_path)
    t = pd.read_csv(b / "occurrences.csv", dtype=str, keep_default_na=False)
    row = int(np.flatnonzero(t.hood_id == "NSA")[0])
    donor = int(np.flatnonzero(t.latitude != "")[0])
    t.loc[row, ["latitude", "longitude"]] = t.loc[donor, ["latitude", "longitude"]].to_numpy()
    t.to_csv(b / "occurrences.csv", index=False, lineterminator="\n")
    _rehash(b, "occurrences.csv")
    code, output = _check(b, *_geo_args(city))
    assert code == 1 and f"FAIL [nsa-no-coordinates] occurrences occurrences.csv: 1 NSA row(s) carry coordinates (rows {row + 1})" in output
