"""Shared fixtures: test mode on (seeds allowed), paths to the real TPS data when present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["RELEASE_TEST_MODE"] = "1"
os.environ.setdefault("RELEASE_PSEUDONYM_KEY", "test-key-0123456789abcdef0123456789")

# The test deployment: approval is on by default, so the suite says explicitly that its ad-hoc
# policies run unapproved (tests of approval bring their own configuration). Test-mode runs sign
# with the public test key, which `release check` trusts only in test mode.
TEST_DEPLOYMENT = Path(tempfile.mkdtemp(prefix="release-test-deployment-"))
(TEST_DEPLOYMENT / "release.toml").write_text("# The test suite's deployment: approval explicitly off.\n"
                                              "[approval]\nrequired = false\n", encoding="utf-8")


def _demo_sources() -> str:
    from release.dp.sources import DEMO_BUDGET

    return "\n" + DEMO_BUDGET[DEMO_BUDGET.index("[sources."):]


DEMO_SOURCES = _demo_sources()
"The bundled DP policies' registered sources (the demo's ceilings), for test configurations."


def _register_demo_sources() -> None:
    """The bundled DP policies' sources (the demo's ceilings), but no [ledger]: a DP test names its own ledger
    (`--ledger`, allowed in test mode) so that no two tests share a budget."""
    with open(TEST_DEPLOYMENT / "release.toml", "a", encoding="utf-8") as f:
        f.write(DEMO_SOURCES)


_register_demo_sources()
os.environ["RELEASE_CONFIG"] = str(TEST_DEPLOYMENT / "release.toml")
UNAPPROVED = {"allow_unapproved": True}
"Options for check_bundle on bundles of the test deployment (made with approval explicitly off)."


def internal_dir(bundle: Path) -> Path:
    """Where a bundle's internal diagnostics went: OUT.internal/<dataset>/ beside the publication folder OUT."""
    out = bundle.parent.parent
    return out.parent / f"{out.name}.internal" / bundle.parent.name

ROOT = Path(__file__).resolve().parent.parent
TPS = ROOT.parent / "shared" / "data" / "tps"
POLICIES = ROOT / "policies"


@pytest.fixture
def tps_dir() -> Path:
    """The real published TPS files; tests using them skip cleanly when the folder is absent."""
    if not TPS.is_dir():
        pytest.skip("real TPS data not available (../shared/data/tps)")
    return TPS
