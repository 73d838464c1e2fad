"""Identifier-like columns and the cross-dataset linkage finding, on published tables built in memory."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from release.governance.linkage import PublishedTable, linkage_findings, looks_like_identifier
from release.policy.base import Role

N = 60
IDS = [f"GO-2024{i:07d}" for i in range(N)]


@pytest.mark.parametrize(("values", "kind"), [
    (IDS, "code"),
    ([hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(N)], "code"),
    ([f"{i:012d}" for i in range(N)], "code"),
    ([f"a note about occurrence number {i} written by the officer" for i in range(N)], "free text"),
    ([f"2024-01-{1 + i % 28:02d} {i % 24:02d}:00" for i in range(N)], None),  # dates: quasi-identifiers
    ([str(i) for i in range(N)], None),  # plain numbers
    (["D11", "D12", "D14"] * 20, None),  # categories
])
def test_looks_like_identifier(values: list[str], kind: str | None) -> None:
    assert looks_like_identifier(pd.Series(values)) == kind


def area_and_points(group_a: str | None = None, group_b: str | None = None,
                    ids_b: list[str] | None = None) -> list[PublishedTable]:
    area = pd.DataFrame({"event_id": IDS, "division": ["D11"] * N, "day": ["2024-01-05"] * N})
    points = pd.DataFrame({"event_id": ids_b or IDS, "division": ["D11"] * N, "day": ["2024-01-05 13:00"] * N,
                           "latitude": ["43.7"] * N, "longitude": ["-79.4"] * N})
    roles = {"division": Role.area, "day": Role.time, "latitude": Role.latitude, "longitude": Role.longitude}
    return [PublishedTable("area-only", "b1", "a.csv", area, roles, {"event_id": group_a}),
            PublishedTable("with-points", "b2", "p.csv", points, roles, {"event_id": group_b})]


def test_an_undeclared_link_that_attaches_points_and_finer_times_fails() -> None:
    (f,) = linkage_findings(area_and_points())
    assert not f.ok and f.check == "cross-dataset-linkage" and f.figure == N
    assert "area-only gains points (latitude, longitude) for 60 record(s)" in f.message
    assert "area-only gains finer day for 60 record(s)" in f.message


def test_a_declared_link_group_passes_and_chance_overlaps_are_not_links() -> None:
    (f,) = linkage_findings(area_and_points("g", "g"))
    assert f.ok and "link_group g" in f.message
    assert not linkage_findings(area_and_points("g", "h"))[0].ok  # different groups: not declared
    one_shared = IDS[:1] + [f"GO-2099{i:07d}" for i in range(N - 1)]
    (f,) = linkage_findings(area_and_points(ids_b=one_shared))
    assert f.ok and "no identifier-like values shared" in f.message
