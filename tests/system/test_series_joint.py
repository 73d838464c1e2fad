"""Series by source and joint k-anonymity across versions, end to end (docs/series.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from release.check import check_bundle
from release.engine import run_release
from release.errors import BlockedError
from tests.conftest import UNAPPROVED
from tests.system.mini import write_policy

K = 25


def joint_policy(name: str = "people", *, levels: dict[str, int], joint: str = "block",
                 source: str = "crime-records") -> dict[str, Any]:
    return {
        "version": 1,
        "dataset": {"name": name, "title": "People", "publisher": "test"},
        "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86]},
        "input": {"record_id": "record_id", "columns": {
            "record_id": {"type": "string", "role": "record-id"},
            "age": {"type": "integer", "role": "quasi-identifier", "min": 0, "max": 120},
            "category": {"type": "string", "role": "quasi-identifier"},
        }},
        "steps": [
            {"type": "pseudonymize", "columns": ["record_id"], "method": "hmac", "secret_env": "RELEASE_PSEUDONYM_KEY",
             "link_group": "people", "prefix": "GO-"},
            {"type": "k-anonymity", "k": K, "levels": levels, "quasi_identifiers": {
                "age": {"widths": [5, 10]},
                "category": {"tree": [{"A": "AB", "B": "AB", "C": "C"}]}}},
        ],
        "outputs": [{"name": "people", "kind": "records", "columns": ["record_id", "age", "category"]}],
        "series": {"source": source, "secret_env": "RELEASE_PSEUDONYM_KEY", "joint": joint},
    }


def records(n: int) -> pd.DataFrame:
    i = pd.RangeIndex(n)
    return pd.DataFrame({"record_id": [f"R{j:05d}" for j in i], "age": 20 + (i % 40),
                         "category": [("A", "B", "C")[(j // 40) % 3] for j in i]})


V1 = {"age": 1, "category": 2}  # 5-year bands, category '*'
V2 = {"age": 2, "category": 0}  # 10-year bands, exact category: a different node


def run(tmp: Path, pol: dict[str, Any], n: int, out: Path, tag: str) -> Path:
    p = write_policy(tmp / f"{tag}.yaml", pol)
    rec = tmp / f"{tag}.csv"
    records(n).to_csv(rec, index=False)
    res = run_release(p, rec, out)
    assert res.bundle is not None
    return res.bundle


def report(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "report.json").read_text())


def test_a_renamed_dataset_is_still_a_predecessor_and_the_joint_check_blocks(tmp_path: Path) -> None:
    out = tmp_path / "pub"
    b1 = run(tmp_path, joint_policy(levels=V1), 480, out, "v1")
    # Another source's release in the same folder is no predecessor.
    run(tmp_path, joint_policy("others", levels=V1, source="use-of-force-records"), 480, out, "o1")
    # Renamed, grown, generalized at another node: joined records intersect into classes of 20 < k=25.
    with pytest.raises(BlockedError) as e:
        run(tmp_path, joint_policy("people-renamed", levels=V2), 840, out, "v2")
    rep = e.value.report  # type: ignore[attr-defined]
    assert [p["release_id"] for p in rep["series"]["predecessors"]] == [b1.name]
    joint = rep["outputs"][0]["figures"]["series"]["joint"]
    assert joint["case"] == "joined" and joint["joined"] == 480 and joint["k"] < K
    assert any(f["check"] == "series-joint-k" and not f["ok"] for f in rep["findings"])
    assert not (out / "people-renamed").exists()


@pytest.mark.parametrize("policy", ["keep-earlier", "refine"])
def test_keep_earlier_or_refine_publishes_joined_records_at_safe_values(tmp_path: Path, policy: str) -> None:
    out = tmp_path / "pub"
    b1 = run(tmp_path, joint_policy(levels=V1), 480, out, "v1")
    b2 = run(tmp_path, joint_policy("people-q2", levels=V2, joint=policy), 840, out, "v2")
    rep = report(b2)
    joint = rep["outputs"][0]["figures"]["series"]["joint"]
    assert joint["case"] == "joined" and joint["k"] >= K
    ev = next(s for s in rep["steps"] if s["type"] == "k-anonymity")
    assert ev["series_joint"]["records_at_earlier_values"] == 480
    assert rep["series"]["predecessors"][0]["release_id"] == b1.name
    # Brute force on the join: each joined record's two published values, as sets of true values, intersected.
    one, two = pd.read_csv(b1 / "people.csv", dtype=str), pd.read_csv(b2 / "people.csv", dtype=str)
    m = two.merge(one, on="record_id", how="left", suffixes=("", "_1"))
    combined = m.apply(lambda r: (frozenset(ages(r.age)) & frozenset(ages(r.age_1)) if isinstance(r.age_1, str)
                                  else frozenset(ages(r.age)),
                                  frozenset(cats(r.category)) & frozenset(cats(r.category_1))
                                  if isinstance(r.category_1, str) else frozenset(cats(r.category))), axis=1)
    assert combined.value_counts().min() >= K
    # `release check` re-discovers the predecessor and recomputes the series figures.
    res = check_bundle(b2, UNAPPROVED)
    assert res.ok, [f.message for f in res.findings if not f.ok]
    # Acceptance 4: the series section of report.json, the manifest and report.html.
    assert rep["series"]["source"] == "crime-records" and rep["series"]["joint_policy"] == policy
    man = json.loads((b2 / "manifest.json").read_text())
    assert man["series"]["predecessors"][0]["release_id"] == b1.name
    assert man["series"]["joint"]["people"] == {"case": "joined", "k": joint["k"], "ok": True}
    html = (b2 / "report.html").read_text()
    assert "Series: earlier releases of the same source" in html and b1.name in html
    assert "joint k-anonymity" in html and f"k={joint['k']}" in html


def test_check_recomputes_the_series_figures_from_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "pub"
    b1 = run(tmp_path, joint_policy(levels=V1), 480, out, "v1")
    b2 = run(tmp_path, joint_policy(levels=V2, joint="keep-earlier"), 840, out, "v2")
    assert check_bundle(b2, UNAPPROVED).ok
    # Without its predecessor in the folder the check finds other series figures than report.json states.
    shutil.move(str(b1), str(tmp_path / "elsewhere"))
    res = check_bundle(b2, UNAPPROVED)
    bad = [f.message for f in res.findings if not f.ok]
    assert any("series" in m and "differ" in m for m in bad), bad


def ages(label: str) -> range:
    if label == "*":
        return range(0, 121)
    if "-" in label:
        a, b = label.split("-")
        return range(int(a), int(b) + 1)
    return range(int(label), int(label) + 1)


def cats(label: str) -> set[str]:
    return {"*": {"A", "B", "C"}, "AB": {"A", "B"}}.get(label, {label})


def test_an_unverified_bundle_of_the_folder_fails_the_series_check(tmp_path: Path) -> None:
    out = tmp_path / "pub"
    b1 = run(tmp_path, joint_policy(levels=V1), 480, out, "v1")
    forged = out / "people" / "20200101T000000Z-deadbeef"
    shutil.copytree(b1, forged)
    (forged / "people.csv").write_text((forged / "people.csv").read_text().replace("GO-", "GX-", 1))
    with pytest.raises(BlockedError) as e:
        run(tmp_path, joint_policy(levels=V1), 480, out, "v2")
    assert any(f["check"] == "series-predecessors" and not f["ok"] for f in e.value.report["findings"])  # type: ignore[attr-defined]


def test_releases_within_one_second_are_ordered_by_the_signed_manifest(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    import release.engine as engine

    # Same second, and the later release's id sorts first: order comes from the manifest, not from the ids.
    ids = iter(["20250301T120000Z-ffffffff", "20250301T120000Z-00000000"])
    monkeypatch.setattr(engine, "new_release_id", lambda now, parent=None: next(ids))
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    out = tmp_path / "pub"
    bundles = []
    for tag, pol, n in (("v1", joint_policy(levels=V1), 480), ("v2", joint_policy(levels=V2, joint="refine"), 840)):
        p = write_policy(tmp_path / f"{tag}.yaml", pol)
        records(n).to_csv(tmp_path / f"{tag}.csv", index=False)
        bundles.append(run_release(p, tmp_path / f"{tag}.csv", out, now=now).bundle)
    assert report(bundles[1])["series"]["predecessors"][0]["release_id"] == bundles[0].name
    for b in bundles:
        res = check_bundle(b, UNAPPROVED)
        assert res.ok, (b.name, [f.message for f in res.findings if not f.ok])
