"""report.html: every kind of figure renders, unknown or partial figures never break it, nothing loads."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from release.report.html import CSP, build_page

TABLE_CSV = b"division,gender,count\nD11,Man,12\nD11,Woman,\nD12,Man,\nD12,Woman,9\n"
DP_CSV = b"division,count\nD11,17\nD12,0\nD13,44\n"
GEOJSON = (b'{"type":"FeatureCollection","features":[\n'
           b'{"type":"Feature","geometry":{"type":"Point","coordinates":[-79.4,43.7]},"properties":{}},\n'
           b'{"type":"Feature","geometry":{"type":"Point","coordinates":[-79.4,43.7]},"properties":{}},\n'
           b'{"type":"Feature","geometry":{"type":"Point","coordinates":[-79.3,43.65]},"properties":{}}\n]}\n')
AREAS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"id": "1"}, "geometry": {"type": "Polygon", "coordinates": [
        [[-79.5, 43.6], [-79.2, 43.6], [-79.2, 43.8], [-79.5, 43.8], [-79.5, 43.6]]]}}]}


def full_report() -> dict[str, Any]:
    return {
        "dataset": "demo", "title": "Demo <release>", "release_id": "20260101T000000Z-abcd", "verdict": "pass",
        "created_utc": "2026-01-01T00:00:00+00:00",
        "findings": [{"check": "k-anonymity", "ok": True, "message": "k 5 >= 5", "output": "arrests"},
                     {"check": "note", "ok": True, "message": "<script>alert(1)</script>"}],
        "validation": {"rows_read": 100, "rows_excluded": 2, "violations": []},
        "steps": [{"index": 0, "type": "filter", "rows_excluded": 8, "seconds": 0.1}],
        "gate": {"min_k": 5, "max_epsilon_per_release": 1.0},
        "budget": {"spent_in_period_before": {"epsilon": 1.0}, "asked": {"epsilon": 1.0},
                   "spent_in_period_after": {"epsilon": 2.0}, "caps": {"per_period": {"epsilon": 4.0}}},
        "outputs": [
            {"name": "arrests", "kind": "records", "files": ["arrests.csv", "arrests.geojson"],
             "figures": {"rows": 90, "columns": ["a", "b"], "anonymity": {
                 "quasi_identifiers": ["a", "b"], "k": 5, "class_size_distribution": {"5": 3, "7": 2, "30": 1},
                 "l": {"outcome": {"distinct": 2}},
                 "risk": {"prosecutor": {"highest": 0.2, "average": 0.1, "share_above": 0.0},
                          "journalist": {"highest": 0.2}, "marketer": 0.05},
                 "sample_uniques": 0},
                 "location": {"method": "snap", "displacement_m": {"min": 1, "median": 40, "p95": 120, "max": 300},
                              "distinct_points": 2, "withheld": {"count": 3, "reasons": {"sexual offence": 3}}}}},
            {"name": "force", "kind": "dp-table", "files": ["force.csv"],
             "figures": {"dp": {"mechanism": "discrete laplace", "epsilon": 1.0, "scale": 2.0, "accuracy_95": 6.0,
                                "key_source": "public", "cells": 3}}},
            {"name": "gender", "kind": "table", "files": ["gender.csv"],
             "figures": {"suppression": {"cells": 4, "primary": 1, "secondary": 1, "smallest_interval": 7,
                                         "audit": [{"cell": "D11/Woman", "lower": 0, "upper": 12}]}}},
            {"name": "odd", "kind": "new-kind", "files": [], "figures": {"mystery": {"x": 1}, "answer": 42}},
        ],
    }


def files() -> dict[str, bytes]:
    return {"arrests.csv": b"a,b\n1,2\n", "arrests.geojson": GEOJSON, "force.csv": DP_CSV, "gender.csv": TABLE_CSV}


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> Collector:
    c = Collector()
    c.feed(html)
    return c


def test_every_output_has_a_section_with_a_chart() -> None:
    html = build_page(full_report(), files(), areas=AREAS, approval={"required": False})
    for name in ("arrests", "force", "gender", "odd"):
        m = re.search(rf'<section class="card output" id="output-{name}"(.*?)</section>', html, re.S)
        assert m, name
        if name != "odd":
            assert "<svg" in m.group(1), f"no chart in {name}"
    assert 'id="verdict"' in html and "PASS" in html
    assert "Equivalence classes by size" in html and "Displacement" in html and "Published points (2 distinct)" in html
    assert "published values with 95% intervals" in html and "[11.0, 23.0]" in html  # 17 ± 6
    assert "ledger epsilon in period: before → after this release" in html and "1 → 2" in html
    assert "Cells published and suppressed" in html
    assert "mystery" in html and "42" in html  # unknown figures: generic table
    assert "epsilon: ledger before and after this release" in html
    assert "not required" in html


def test_suppressed_cells_show_as_suppressed_never_a_value() -> None:
    html = build_page(full_report(), files())
    sec = re.search(r'id="output-gender"(.*?)</section>', html, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r"<tr><td>(D1\d)</td><td>(\w+)</td><td>([^<]*)</td></tr>", sec)
    assert ("D11", "Woman", "suppressed") in rows and ("D12", "Man", "suppressed") in rows
    assert ("D11", "Man", "12") in rows


def test_self_contained_no_script_no_external_reference() -> None:
    html = build_page(full_report(), files(), areas=AREAS)
    tags = parse(html).tags
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed", "link", "img")]
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0]["content"] == CSP and "default-src 'none'" in CSP
    for _, attrs in tags:
        for k in ("src", "href", "xlink:href"):
            v = attrs.get(k)
            assert v is None or v.startswith("#") or v.startswith("data:"), (k, v)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "Demo &lt;release&gt;" in html


def test_blocked_report_leads_with_failed_findings() -> None:
    rep = full_report()
    rep["verdict"] = "blocked"
    rep["findings"].append({"check": "k-anonymity", "ok": False, "message": "smallest class 1 < 5", "output": "arrests"})
    html = build_page(rep, files())
    assert "BLOCKED" in html and html.index("smallest class 1 &lt; 5") < html.index('id="approval"')


def test_internal_report_adds_diagnostics() -> None:
    html = build_page(full_report(), files(), internal={"outputs": {"gender": {"suppressed_total": 11}}})
    assert "INTERNAL REPORT" in html and "suppressed total" in html
    assert "INTERNAL" not in build_page(full_report(), files())


figure_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                             lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                             max_leaves=12)


@settings(max_examples=8, deadline=None)
@given(anonymity=figure_values, location=figure_values, dp=figure_values, suppression=figure_values,
       other=figure_values)
def test_any_figures_render_without_error(anonymity: Any, location: Any, dp: Any, suppression: Any,
                                          other: Any) -> None:
    rep = full_report()
    rep["outputs"][0]["figures"] = {"anonymity": anonymity, "location": location, "extra": other}
    rep["outputs"][1]["figures"] = {"dp": dp}
    rep["outputs"][2]["figures"] = {"suppression": suppression}
    html = build_page(rep, files())
    for name in ("arrests", "force", "gender", "odd"):
        assert f'id="output-{name}"' in html


def test_displacement_histogram_with_open_last_band() -> None:
    rep = full_report()
    rep["outputs"][0]["figures"]["location"]["displacement_histogram"] = {
        "edges_m": [0.0, 10.0, 50.0, 100.0], "counts": [3, 40, 2, 0]}
    html = build_page(rep, files())
    assert "10–50" in html and "50–100" in html and "100+" not in html  # empty open band trimmed
    assert "records" in html and "median 40 m" in html


def test_bundle_check_of_report_html(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from release.report.audit import report_html_check

    good = build_page(full_report(), files(), areas=AREAS)
    (tmp_path / "report.html").write_text(good)
    [f] = report_html_check(None, tmp_path, {}, {})
    assert f.ok, f.message
    for bad, why in [(good.replace("</main>", '<img src="https://tracker.example/p.gif"></main>'), "src="),
                     (good.replace("</main>", "<script>fetch('x')</script></main>"), "<script>"),
                     (good.replace("default-src &#39;none&#39;", "default-src *"), "Content-Security-Policy"),
                     (good.replace("<strong>PASS</strong>", "<strong>BLOCKED</strong>"), "verdict")]:
        (tmp_path / "report.html").write_text(bad)
        [f] = report_html_check(None, tmp_path, {}, {})
        assert not f.ok and why in f.message, (why, f.message)


def test_audit_allows_links_to_the_bundles_own_files_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A relative link to a file of the same bundle opens nothing by itself; any other target fails the check."""
    from release.report.audit import report_html_check

    good = build_page(full_report(), files(), areas=AREAS)
    (tmp_path / "gender.csv").write_bytes(TABLE_CSV)
    ok_page = good.replace("</main>", '<a href="gender.csv">gender.csv</a></main>')
    (tmp_path / "report.html").write_text(ok_page)
    [f] = report_html_check(None, tmp_path, {}, {})
    assert f.ok, f.message
    for href in ("missing.csv", "../other/gender.csv", "/etc/passwd", "https://example.org/gender.csv",
                 "//example.org/x.csv", "sub/gender.csv", "file:///tmp/gender.csv"):
        (tmp_path / "report.html").write_text(good.replace("</main>", f'<a href="{href}">x</a></main>'))
        [f] = report_html_check(None, tmp_path, {}, {})
        assert not f.ok and "href=" in f.message, href
    (tmp_path / "report.html").write_text(good.replace("</main>", '<img src="gender.csv"></main>'))
    [f] = report_html_check(None, tmp_path, {}, {})
    assert not f.ok  # only <a> may point at a bundle file: nothing loads without a click


def test_long_tables_collapse_with_a_link_to_the_published_file() -> None:
    rep = full_report()
    rows = "".join(f"D{i},Man,{i + 10}\n" for i in range(120))
    big = ("division,gender,count\n" + rows).encode()
    html = build_page(rep, {**files(), "gender.csv": big})
    assert '<a href="gender.csv">' in html and "120 rows" in html and "first 50 of 120 rows" in html
    assert html.count("<tr><td>D") < 120 + 10  # the table is cut to 50 rows, not all 120


def test_first_screen_states_risk_in_plain_words_before_the_findings() -> None:
    html = build_page(full_report(), files(), areas=AREAS)
    risk = html.index('id="risk-statement"')
    assert html.index('id="verdict"') < risk < html.index('id="approval"') < html.index('id="findings"')
    assert "probability at most 20.0%" in html  # the prosecutor risk of the records output, in words
    assert "Not approved" in html[:risk] and "--neighbourhoods" not in html
    # findings grouped by check and collapsed when they all pass
    assert '<details class="group"><summary>k-anonymity — 1 finding, all pass</summary>' in html


def test_drowned_dp_cells_are_a_first_screen_warning() -> None:
    html = build_page(full_report(), files())
    warn = html.index('id="warnings"')
    assert warn < html.index('id="risk-statement"')
    assert "force: 1 of 3 counts are drowned in their noise" in html
