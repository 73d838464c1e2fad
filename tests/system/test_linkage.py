"""Acceptance (issue 12): no linkage between datasets unless declared, and no record id published as it is."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from release import registry
from release.cli import main
from release.governance.linkage import tables_of
from tests.budget import write_config
from tests.system.mini import mini_policy, mini_records, write_policy


@pytest.fixture(autouse=True)
def _no_html(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "RENDERERS", [])
    monkeypatch.setattr(registry, "PRE_PUBLISH", [])


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner(env={"RELEASE_CONFIG": None}).invoke(main, list(args))  # type: ignore[dict-item]
    return r.exit_code, r.output


@pytest.fixture
def office(tmp_path: Path) -> dict[str, Path]:
    data = mini_records(300).assign(event_id=[f"GO-2024{i:07d}" for i in range(300)])
    data.to_csv(tmp_path / "in.csv", index=False)
    return {"dir": tmp_path, "input": tmp_path / "in.csv", "config": write_config(tmp_path / "deploy"),
            "out": tmp_path / "out"}


def policy(o: dict[str, Path], name: str, columns: list[str], pseudonymize: dict[str, Any] | None = None) -> Path:
    doc = mini_policy()
    doc["dataset"].update(name=name, title=name)
    doc["input"]["columns"]["event_id"] = {"type": "string", "role": "other"}
    if pseudonymize is not None:
        doc["steps"].insert(1, {"type": "pseudonymize", "columns": ["event_id"], "method": "hmac",
                                "secret_env": "RELEASE_PSEUDONYM_KEY", "prefix": "GO-", **pseudonymize})
    doc["outputs"] = [{"name": "records", "kind": "records", "columns": columns}]
    return write_policy(o["dir"] / f"{name}.yaml", doc)


def run(o: dict[str, Path], pol: Path) -> tuple[int, str]:
    return _cli("run", str(pol), "--input", str(o["input"]), "--out", str(o["out"]), "--config", str(o["config"]),
                "-q")


def linkage_lines(o: dict[str, Path]) -> list[str]:
    _, text = _cli("check-all", str(o["out"]), "--config", str(o["config"]), "--allow-unapproved")
    return [line for line in text.splitlines() if "[cross-dataset-linkage]" in line]


AREA = ["event_id", "occurred", "category", "division"]
POINTS = ["event_id", "occurred", "category", "division", "latitude", "longitude"]


@pytest.mark.parametrize(("steps", "expect"), [
    (None, "FAIL"),  # raw event ids in both: the area-only file picks up points
    ({}, "none"),  # keyed pseudonyms, one key per dataset: nothing shared
    ({"link_group": "occurrences"}, "declared"),  # the same declared link group in both policies
])
def test_area_only_records_pick_up_points_only_through_a_declared_link(office: dict[str, Path],
                                                                       steps: dict | None, expect: str) -> None:
    for name, cols in (("area-only", AREA), ("with-points", POINTS)):
        code, text = run(office, policy(office, name, cols, steps))
        assert code == 0, text
    lines = linkage_lines(office)
    if expect == "FAIL":
        assert any(line.startswith("FAIL") and "an undeclared link" in line and
                   "area-only gains points (latitude, longitude) for 300 record(s)" in line for line in lines), lines
    elif expect == "none":
        assert lines == ["ok   [cross-dataset-linkage] no identifier-like values shared between the 2 dataset(s) of"
                         " the folder (2 identifier-like column(s) compared)"], lines
    else:
        assert len(lines) == 1 and lines[0].startswith("ok") and "declared by both policies (link_group" \
            " occurrences)" in lines[0], lines


@pytest.mark.parametrize(("columns", "pseudonymized", "blocked"), [
    (["record_id", "occurred", "division"], False, True),
    (["person_id", "occurred", "division"], True, False),  # the mini policy gives person_id random ids
    (["record_id", "occurred", "division"], True, False),
])
def test_record_ids_are_published_only_pseudonymized(office: dict[str, Path], columns: list[str],
                                                     pseudonymized: bool, blocked: bool) -> None:
    doc = mini_policy()
    doc["input"]["columns"]["event_id"] = {"type": "string", "role": "other"}
    for st in doc["steps"]:
        if st["type"] == "pseudonymize":
            st["prefix"] = "P-"  # bare hex ids can look like phone numbers to the identifier scan
    if pseudonymized and "record_id" in columns:
        doc["steps"].insert(1, {"type": "pseudonymize", "columns": ["record_id"], "method": "hmac",
                                "secret_env": "RELEASE_PSEUDONYM_KEY", "prefix": "R-"})
    doc["outputs"] = [{"name": "records", "kind": "records", "columns": columns}]
    code, text = run(office, write_policy(office["dir"] / "p.yaml", doc))
    if blocked:
        assert code == 1, text
        assert "[published-identifier]" in text and "['record_id'] published as they are" in text
        assert not office["out"].exists() or not any(office["out"].glob("mini/*"))
    else:
        assert code == 0, text


def test_demo_datasets_share_no_identifier_like_values(demo: dict[str, Any]) -> None:
    """Every pair of demo bundles joined on every common column: no identifier-like value (a pseudonym, record or
    unit id, code or free text, by its policy's declaration or its look) is shared between two datasets."""
    tables = [t for b in demo["bundles"].values() for t in tables_of(b)]
    identifier_joins = 0
    for a, b in itertools.combinations(tables, 2):
        if a.dataset == b.dataset:
            continue
        ida, idb = a.identifiers(), b.identifiers()
        for c in sorted(set(a.frame.columns) & set(b.frame.columns)):
            joined = a.frame[[c]].dropna().drop_duplicates().merge(b.frame[[c]].dropna().drop_duplicates(), on=c)
            if c in ida or c in idb:
                identifier_joins += 1
                assert joined.empty, f"{a.dataset} and {b.dataset} share {len(joined)} value(s) of {c}"
    assert identifier_joins >= 3  # the event ids of crime indicators, hate crimes and shootings at least
    # And check-all's folder check says the same.
    from release.governance.linkage import folder_linkage_check

    findings = folder_linkage_check(demo["out"], list(demo["bundles"].values()), {})
    assert [f.ok for f in findings] == [True] and "no identifier-like values shared" in findings[0].message
