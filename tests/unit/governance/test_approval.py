"""Signed policy approval: signatures hold only for the approved bytes and trusted keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.errors import BlockedError, UsageError
from release.governance.approval import (
    approve,
    candidate_paths,
    check_policy_approval,
    policy_content_sha256,
    verify_approval,
)
from release.governance.config import load_approval_config
from release.governance.keys import Keyring, generate, load_private
from tests.system.mini import mini_policy, write_policy


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "keys"
    priv, _pub, _kid = generate(keys)
    keyring = tmp_path / "keyring.json"
    Keyring.add(keyring, load_private(priv).public_key(), "Alice Privacy")
    cfg = tmp_path / "release.toml"
    cfg.write_text('[approval]\nrequired = true\nkeyring = "keyring.json"\n')
    pol = write_policy(tmp_path / "mini.yaml", mini_policy())
    return {"key": priv, "keyring": keyring, "config": cfg, "policy": pol, "dir": tmp_path}


def opts(s: dict[str, Path]) -> dict[str, str]:
    return {"config": str(s["config"])}


def test_private_key_is_private_and_never_overwritten(setup: dict[str, Path]) -> None:
    assert setup["key"].stat().st_mode & 0o077 == 0
    with pytest.raises(UsageError, match="already exists"):
        generate(setup["key"].parent)


def test_approved_policy_passes_and_records_the_approver(setup: dict[str, Path]) -> None:
    path, doc = approve(setup["policy"], setup["key"], "Alice Privacy")
    assert path == setup["dir"] / "mini.approval.json"
    rec = check_policy_approval(setup["policy"], opts(setup))
    assert rec["required"] is True and rec["approver"] == "Alice Privacy"
    assert rec["policy_sha256"] == policy_content_sha256(setup["policy"].read_bytes()) == doc["policy_sha256"]
    assert rec["key_name"] == "Alice Privacy"


def test_unsigned_policy_is_refused_naming_policy_and_reason(setup: dict[str, Path]) -> None:
    with pytest.raises(BlockedError) as e:
        check_policy_approval(setup["policy"], opts(setup))
    assert str(setup["policy"]) in e.value.message and "no approval signature found" in e.value.message


def test_one_character_change_after_approval_is_refused(setup: dict[str, Path]) -> None:
    approve(setup["policy"], setup["key"], "Alice Privacy")
    text = setup["policy"].read_text()
    setup["policy"].write_text(text.replace("Mini test dataset", "Mini test datasat"))
    with pytest.raises(BlockedError) as e:
        check_policy_approval(setup["policy"], opts(setup))
    assert "changed after Alice Privacy approved it" in e.value.message
    assert str(setup["policy"]) in e.value.message


def test_untrusted_key_is_refused(setup: dict[str, Path]) -> None:
    other, _, kid = generate(setup["dir"] / "mallory")
    approve(setup["policy"], other, "Mallory")
    with pytest.raises(BlockedError) as e:
        check_policy_approval(setup["policy"], opts(setup))
    assert f"key {kid}, which is not in the trusted keyring" in e.value.message


def test_forged_approver_name_breaks_the_signature(setup: dict[str, Path]) -> None:
    path, _ = approve(setup["policy"], setup["key"], "Alice Privacy")
    doc = json.loads(path.read_text())
    doc["approver"] = "Chief of Police"
    path.write_text(json.dumps(doc))
    with pytest.raises(BlockedError, match="signature does not verify"):
        check_policy_approval(setup["policy"], opts(setup))


def test_line_endings_do_not_change_the_content_hash(setup: dict[str, Path]) -> None:
    data = setup["policy"].read_bytes()
    assert policy_content_sha256(data) == policy_content_sha256(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))


def test_not_required_records_it_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEASE_CONFIG", raising=False)
    pol = write_policy(tmp_path / "p.yaml", mini_policy())
    assert check_policy_approval(pol, {}) == {"required": False}


def test_approvals_folder_from_configuration(setup: dict[str, Path]) -> None:
    setup["config"].write_text('[approval]\nrequired = true\nkeyring = "keyring.json"\napprovals = "signed"\n')
    cfg = load_approval_config(opts(setup))
    path, _ = approve(setup["policy"], setup["key"], "Alice Privacy", cfg=cfg)
    assert path == setup["dir"] / "signed" / "mini.approval.json"
    assert candidate_paths(setup["policy"], cfg)[0] == path
    assert check_policy_approval(setup["policy"], opts(setup))["approval_file"] == "mini.approval.json"


@pytest.mark.parametrize("text,msg", [
    ("[approval]\nrequired = true\n", "approval.keyring is not set"),
    ("[approval]\nrequired = 1\nkeyring = 'k'\n", "must be true or false"),
    ("[approval]\nrequird = true\n", "approval.requird: unknown key"),
    ("[approval\n", "not valid TOML"),
])
def test_bad_configuration_is_a_usage_error(tmp_path: Path, text: str, msg: str) -> None:
    cfg = tmp_path / "release.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=msg):
        load_approval_config({"config": str(cfg)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_any_byte_change_invalidates_the_approval(setup: dict[str, Path], pos: int, byte: int) -> None:
    path = setup["dir"] / "fixed.approval.json"
    if not path.exists():
        approve(setup["policy"], setup["key"], "Alice Privacy", out=path)
    doc = json.loads(path.read_text())
    data = bytearray(setup["policy"].read_bytes())
    i = pos % len(data)
    if data[i] == byte or bytes([data[i], byte]) in (b"\r\n",) or byte == 13:
        return
    data[i] = byte
    from release.governance.approval import ApprovalProblem

    with pytest.raises(ApprovalProblem, match="changed after"):
        verify_approval(doc, bytes(data), Keyring.load(setup["keyring"]), str(path))
