"""Shared fixtures: test mode on (seeds allowed), paths to the real TPS data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["RELEASE_TEST_MODE"] = "1"
os.environ.setdefault("RELEASE_PSEUDONYM_KEY", "test-key-0123456789abcdef0123456789")

ROOT = Path(__file__).resolve().parent.parent
TPS = ROOT.parent / "shared" / "data" / "tps"
POLICIES = ROOT / "policies"


@pytest.fixture
def tps_dir() -> Path:
    """The real published TPS files; tests using them skip cleanly when the folder is absent."""
    if not TPS.is_dir():
        pytest.skip("real TPS data not available (../shared/data/tps)")
    return TPS
