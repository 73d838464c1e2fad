"""Docs kept true by tests: every step type, output kind and command is documented; policies validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import registry
from release.cli import main
from release.policy.loader import load_policy
from tests.conftest import POLICIES, ROOT


def _docs() -> str:
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def test_every_step_type_and_output_kind_is_documented() -> None:
    registry.load_plugins()
    text = _docs()
    missing = [f"`{t}`" for t in [*registry.STEPS, *registry.OUTPUTS] if f"`{t}`" not in text]
    assert not missing, f"undocumented: {missing}"


def test_every_command_is_documented() -> None:
    text = _docs()
    assert not [c for c in main.commands if f"release {c}" not in text]


@pytest.mark.parametrize("policy", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_policy_validates(policy: Path) -> None:
    assert load_policy(policy).dataset.name
