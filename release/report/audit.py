"""`release check` of report.html: still self-contained (loads nothing) and states the bundle's verdict."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from release.context import Finding

FORBIDDEN_TAGS = {"script", "iframe", "frame", "object", "embed", "link", "base", "form", "audio", "video", "source"}
URL_ATTRS = {"src", "href", "xlink:href", "srcset", "action", "poster", "data", "background"}


_BUNDLE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def bundle_link(v: str, files: set[str] | None) -> bool:
    """A relative link to a file of the same bundle (a flat name, no scheme, no folder): opening it fetches nothing."""
    return files is not None and bool(_BUNDLE_FILE.match(v)) and ".." not in v and v in files


class _Scan(HTMLParser):
    def __init__(self, files: set[str] | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.files = files
        self.problems: list[str] = []
        self.csp: str | None = None
        self.verdict_text: list[str] = []
        self._in_verdict = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> element")
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.csp = a.get("content", "")
        for k, v in a.items():
            if k.startswith("on"):
                self.problems.append(f"event handler {k}=")
            if k == "href" and tag == "a" and bundle_link(v, self.files):
                continue
            if k in URL_ATTRS and v and not (v.startswith("#") or v.startswith("data:")):
                self.problems.append(f"{k}={v[:60]!r} on <{tag}>")
            if k == "style" and "url(" in v.replace(" ", "").lower() and "url(#" not in v.replace(" ", ""):
                self.problems.append(f"style url() on <{tag}>")
        if a.get("id") == "verdict" or self._in_verdict:
            self._in_verdict += 1

    def handle_endtag(self, tag: str) -> None:
        if self._in_verdict:
            self._in_verdict -= 1

    def handle_data(self, data: str) -> None:
        if self._in_verdict:
            self.verdict_text.append(data)


def report_html_check(policy: Any, bundle: Path, manifest: dict[str, Any], options: dict[str, Any]) -> list[Finding]:
    """BUNDLE_CHECKS hook: a report that fetched anything could tell a third party who read which release."""
    p = bundle / "report.html"
    if not p.is_file():
        return [Finding("report-html", False, "report.html missing from the bundle", file="report.html")]
    # Links to the bundle's own published files are allowed (on <a> only): nothing loads until a reader clicks,
    # and what opens is a file of this very bundle.
    scan = _Scan({p.name for p in bundle.iterdir() if p.is_file() and p.name != "report.html"})
    scan.feed(p.read_text(encoding="utf-8", errors="replace"))
    problems = list(scan.problems)
    if scan.csp is None or "default-src 'none'" not in scan.csp:
        problems.append("no Content-Security-Policy with default-src 'none'")
    verdict = " ".join("".join(scan.verdict_text).split())
    if "PASS" not in verdict:
        problems.append("the page does not state the verdict 'pass' of a published bundle")
    if problems:
        return [Finding("report-html", False, "report.html is not a self-contained page: " + "; ".join(problems[:5]),
                        file="report.html")]
    return [Finding("report-html", True, "report.html is self-contained (loads nothing) and states the verdict pass",
                    file="report.html")]
