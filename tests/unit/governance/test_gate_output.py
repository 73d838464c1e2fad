"""Gate output formats: JUnit XML parses and lists every finding; GitHub annotations are escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from release.context import Finding
from release.governance.gate import find_bundles, github_annotations, junit_xml


def findings() -> list[Finding]:
    return [Finding("hash", True, "all 5 files match"),
            Finding("k-anonymity", False, "smallest class 1 < k 5", output="arrests", file="arrests.csv",
                    figure=1, threshold=5),
            Finding("k-anonymity", False, "second: 50%, a:b,c\nnext line", output="arrests", file="arrests.csv")]


def test_junit_lists_every_finding_and_parses() -> None:
    root = ET.fromstring(junit_xml([("out/a/1", findings()), ("out/b/2", [Finding("hash", True, "ok")])]))
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "2"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["out/a/1", "out/b/2"]
    cases = suites[0].findall("testcase")
    assert len(cases) == 3
    names = [c.get("name") for c in cases]
    assert len(set(names)) == 3, "same-named findings must stay distinct test cases"
    fails = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert [f.get("message") for f in fails] == ["smallest class 1 < k 5", "second: 50%, a:b,c\nnext line"]
    assert "threshold: 5" in (fails[0].text or "")


def test_github_annotations_only_for_failures_and_escaped() -> None:
    lines = github_annotations("out/a/1", findings())
    assert len(lines) == 2
    assert lines[0] == ("::error file=out/a/1/arrests.csv,title=release check%3A k-anonymity (arrests)::"
                        "smallest class 1 < k 5")
    assert lines[1].endswith("::second: 50%25, a:b,c%0Anext line")


def test_find_bundles_skips_hidden_and_staging(tmp_path: Path) -> None:
    for rel in ("ds/r1", "ds/r2", ".internal/ds", "ds/.staging-r3", "other/r9"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "manifest.json").write_text("{}")
    got = [str(p.relative_to(tmp_path)) for p in find_bundles(tmp_path)]
    assert got == ["ds/r1", "ds/r2", "other/r9"]
    assert find_bundles(tmp_path / "ds" / "r1") == [tmp_path / "ds" / "r1"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.booleans(), st.text(max_size=40),
                          st.none() | st.text(max_size=8), st.none() | st.text(max_size=12)), max_size=6),
       st.text(min_size=1, max_size=10))
def test_junit_always_parses_and_counts(raw: list[tuple[str, bool, str, str | None, str | None]], bundle: str) -> None:
    fs = [Finding(c, ok, m, output=o, file=f) for c, ok, m, o, f in raw]
    root = ET.fromstring(junit_xml([(bundle, fs)]))
    suite = root.find("testsuite")
    assert suite is not None and len(suite.findall("testcase")) == len(fs)
    assert int(root.get("failures", -1)) == sum(not f.ok for f in fs) == len(list(root.iter("failure")))
    for line in github_annotations(bundle, fs):
        assert line.startswith("::error ") and "\n" not in line and "\r" not in line
