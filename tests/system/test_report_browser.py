"""Acceptance: report.html of demo bundles renders in headless Chromium, with no network request."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="release-report-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              f"--user-data-dir={profile}", "--window-size=1100,900"):
        opts.add_argument(a)
    # Chrome's performance log holds every network event the page causes (DevTools protocol).
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(DRIVER))
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _requests(d: Any) -> list[str]:
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_every_demo_report_renders_offline(driver: Any, demo: dict[str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    for dataset, bundle in demo["bundles"].items():
        report = json.loads((bundle / "report.json").read_text())
        page = (bundle / "report.html").resolve()
        driver.get_log("performance")  # drop events from earlier pages
        driver.get(page.as_uri())
        verdict = driver.find_element(By.ID, "verdict").text
        assert "PASS" in verdict and "Verdict: pass" in verdict, dataset
        assert driver.find_element(By.ID, "findings").is_displayed()
        assert "Approved by" in driver.find_element(By.ID, "approval").text.title() or \
            "approved by" in driver.find_element(By.ID, "approval").text
        for o in report["outputs"]:
            sec = driver.find_element(By.ID, f"output-{o['name']}")
            assert sec.is_displayed() and o["name"] in sec.text
            svgs = sec.find_elements(By.CSS_SELECTOR, "svg.chart")
            assert svgs, f"{dataset}/{o['name']}: no chart"
            for svg in svgs:
                size = svg.size
                assert size["width"] > 100 and size["height"] > 40, (dataset, o["name"], size)
                # matplotlib's drawing is real SVG content: paths (bars, points, outlines) and text.
                assert svg.find_elements(By.CSS_SELECTOR, "path"), (dataset, o["name"])
        # The page loads nothing: no resource entries, no network request other than the file itself.
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        # Chrome's own pages (chrome://new-tab-page...) are the browser, not the report: only fetches that
        # could leave the machine or read another file count.
        others = [u for u in _requests(driver) if u != page.as_uri()
                  and u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp", "file")]
        assert others == [], others
        csp = driver.find_element(By.CSS_SELECTOR, "meta[http-equiv='Content-Security-Policy']")
        assert "default-src 'none'" in csp.get_attribute("content")
        shot = tmp_path / f"{dataset}.png"
        driver.set_window_size(1100, min(int(driver.execute_script("return document.body.scrollHeight")) + 50, 12000))
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        driver.set_window_size(1100, 900)


def test_report_fits_a_phone_and_prints(driver: Any, demo: dict[str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.print_page_options import PrintOptions

    bundle = next(iter(demo["bundles"].values()))
    driver.set_window_size(390, 844)
    try:
        driver.get((bundle / "report.html").resolve().as_uri())
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
        driver.save_screenshot(str(tmp_path / "phone.png"))
        pdf = base64.b64decode(driver.print_page(PrintOptions()))
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    finally:
        driver.set_window_size(1100, 900)


def test_the_network_probe_sees_requests(driver: Any, tmp_path: Path) -> None:
    """Control: a page that does fetch something is caught by both probes, so their silence above means something."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png" alt=""></body></html>')
    driver.get_log("performance")
    driver.get(page.resolve().as_uri())
    assert "http://127.0.0.1:9/pixel.png" in _requests(driver)
    assert driver.execute_script("return performance.getEntriesByType('resource').length") >= 1


ARTIFACTS = Path(os.environ.get("RELEASE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
"Screenshots of every demo report at each width (kept after the run: CI uploads this folder)."

_LAYOUT_JS = """
const vw = document.documentElement.clientWidth;
const wide = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.right > vw + 1 || r.left < -1) wide.push(el.tagName + (el.id ? '#' + el.id : '') + ' ' + Math.round(r.width));
}
const small = [];
for (const t of document.querySelectorAll('svg.chart text')) {
  const r = t.getBoundingClientRect();
  if (r.width > 0 && r.height < 10) small.push((t.textContent || '').trim().slice(0, 30) + ' ' + r.height.toFixed(1));
}
const bottom = id => { const e = document.getElementById(id); return e ? e.getBoundingClientRect().bottom + window.scrollY : null; };
const risk = document.querySelector('#risk-statement ul.risks li');
return {wide: wide.slice(0, 10), nwide: wide.length, small: small.slice(0, 10), nsmall: small.length,
        ntext: document.querySelectorAll('svg.chart text').length,
        verdict: bottom('verdict'), risk: risk ? risk.getBoundingClientRect().bottom + window.scrollY : null,
        warnings: ['not-approved', 'test-mode', 'warnings'].map(bottom).filter(x => x !== null)};
"""


@pytest.mark.parametrize("width", [1280, 390])
def test_first_screen_fits_and_charts_are_legible(driver: Any, demo: dict[str, Any], width: int) -> None:
    """Acceptance 3: verdict, risk statement and warnings in the first 900 px; nothing wider than the screen;
    every chart text at least 10 px tall as drawn; screenshots kept as artifacts."""
    out = ARTIFACTS / "report-screens"
    out.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500})
    try:
        for dataset, bundle in demo["bundles"].items():
            driver.get((bundle / "report.html").resolve().as_uri())
            m = driver.execute_script(_LAYOUT_JS)
            shot = out / f"{dataset}-{width}px.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
            assert m["verdict"] is not None and m["verdict"] <= 900, (dataset, width, m["verdict"])
            assert m["risk"] is not None and m["risk"] <= 900, (dataset, width, "risk statement", m["risk"])
            assert m["warnings"] and max(m["warnings"]) <= 900, (dataset, width, "warnings", m["warnings"])
            assert m["nwide"] == 0, (dataset, width, m["wide"])
            assert m["ntext"] > 0 and m["nsmall"] == 0, (dataset, width, m["small"])
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_layout_probe_sees_overflow_and_small_text(driver: Any, tmp_path: Path) -> None:
    """Control: a too-wide element and 4 px chart text are caught, so the probe's silence above means something."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><div id="verdict">PASS</div><div style="width:2000px">x</div>'
                    '<svg class="chart" viewBox="0 0 1000 100" style="width:300px"><text x="0" y="50" '
                    'font-size="12">tiny</text></svg></body></html>')
    driver.get(page.resolve().as_uri())
    m = driver.execute_script(_LAYOUT_JS)
    assert m["nwide"] >= 1 and m["nsmall"] == 1
