"""Bounded policies (size, depth, items, aliases before any tree is built) and helpful policy errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release.errors import PolicyError
from release.policy import loader
from release.policy.loader import load_policy, parse_policy
from tests.system.mini import mini_policy


def text(p: dict) -> str:
    return yaml.safe_dump(p, sort_keys=False)


def rendered_error(policy_text: str) -> str:
    with pytest.raises(PolicyError) as e:
        parse_policy(policy_text, "x.yaml")
    return e.value.render()


def test_a_4mb_policy_is_refused_without_reading_it_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.yaml"
    p.write_text(text(mini_policy()) + "# " + "x" * (4 << 20) + "\n")
    calls = []
    monkeypatch.setattr(loader.yaml, "compose", lambda *a, **k: calls.append(1))
    with pytest.raises(PolicyError, match=r"larger than 1,048,576 bytes \[rule: policy-size\]"):
        load_policy(p)
    assert not calls  # refused before any YAML was composed


def test_5000_deep_nesting_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy("a: " + "[" * 5000 + "]" * 5000, "deep.yaml")
    assert "deep.yaml:1" in e.value.render()


def test_nesting_past_the_limit_is_refused_by_its_rule() -> None:
    depth = loader.MAX_DEPTH + 5
    with pytest.raises(PolicyError, match=r"nesting deeper than \d+ levels \[rule: policy-depth\]"):
        parse_policy("a: " + "[" * depth + "]" * depth, "deep.yaml")


def test_too_many_items_stop_the_event_walk_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_NODES", 1000)
    seen = []
    real = loader.yaml.parse

    def counting(*a: object, **k: object):
        for ev in real(*a, **k):
            seen.append(ev)
            yield ev

    monkeypatch.setattr(loader.yaml, "parse", counting)
    with pytest.raises(PolicyError, match=r"more than 1,000 items \[rule: policy-size\]"):
        parse_policy("a: [" + ",".join(["1"] * 300_000) + "]", "items.yaml")
    assert len(seen) < 1100  # stopped at the limit, not after the 300,000 items


def test_many_aliases_are_refused() -> None:
    body = "base: &b {x: 1}\n" + "".join(f"k{i}: *b\n" for i in range(loader.MAX_ALIASES + 1))
    with pytest.raises(PolicyError, match=r"aliases \[rule: policy-aliases\]"):
        parse_policy(body, "alias.yaml")


def test_unknown_keys_suggest_the_nearest_known_key() -> None:
    p = mini_policy()
    p["outputs"][0]["colums"] = p["outputs"][0].pop("columns")
    p["gate"] = {"min_kk": 3}
    p["dataset"]["licnse"] = "CC-BY"
    with pytest.raises(PolicyError) as e:
        parse_policy(text(p), "x.yaml")
    t = e.value.render()
    assert "outputs[0].colums: unknown key; did you mean 'columns'?" in t
    assert "gate.min_kk: unknown key; did you mean 'min_k'?" in t
    assert "dataset.licnse: unknown key; did you mean 'license'?" in t


def test_unknown_columns_suggest_the_nearest_column() -> None:
    p = mini_policy()
    p["outputs"][0]["columns"] = ["occurred", "categroy"]
    assert "column 'categroy' is not in the schema after the steps; did you mean 'category'?" in rendered_error(text(p))


def test_publisher_is_required() -> None:
    p = mini_policy()
    del p["dataset"]["publisher"]
    assert "dataset.publisher: is required" in rendered_error(text(p))


def test_licence_is_a_spelling_of_license() -> None:
    p = mini_policy()
    p["dataset"]["licence"] = "CC-BY-4.0"
    assert parse_policy(text(p), "x.yaml").dataset.license == "CC-BY-4.0"
    p["dataset"]["license"] = "other"
    assert "license or licence, not both" in rendered_error(text(p))


def test_column_names_with_control_characters_are_refused() -> None:
    p = mini_policy()
    p["input"]["columns"]["evil\x1b[2J"] = {"type": "string", "required": False}
    t = rendered_error(text(p))
    assert "no control characters" in t and "\x1b" not in t


def test_identifier_scan_waivers_name_published_columns() -> None:
    p = mini_policy(gate={"identifier_scan_waivers": {"divison": ["person-name"]}})
    assert "column 'divison' is not published by any output; did you mean 'division'?" in rendered_error(text(p))
    p = mini_policy(gate={"identifier_scan_waivers": {"division": ["shoe-size"]}})
    with pytest.raises(PolicyError):
        parse_policy(text(p), "x.yaml")
