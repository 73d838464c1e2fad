"""Signed policy approval: signatures hold only for the approved bytes, the approved files and trusted keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.errors import BlockedError, UsageError
from release.governance.approval import (
    ApprovalProblem,
    approve,
    candidate_paths,
    check_policy_approval,
    compare_subjects,
    policy_content_sha256,
    verify_envelope,
)
from release.governance.config import load_approval_config
from release.governance.keys import Keyring, generate, load_private
from release.governance.trusted import TrustedFiles
from release.policy.loader import parse_policy
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


def check(s: dict[str, Path], data: bytes | None = None) -> dict[str, Any]:
    data = s["policy"].read_bytes() if data is None else data
    policy = parse_policy(s["policy"].read_text(), str(s["policy"]))
    t = TrustedFiles()
    try:
        return check_policy_approval(policy, s["policy"], data, opts(s), t)
    finally:
        t.close()


def test_private_key_is_private_and_never_overwritten(setup: dict[str, Path]) -> None:
    assert setup["key"].stat().st_mode & 0o077 == 0
    with pytest.raises(UsageError, match="already exists"):
        generate(setup["key"].parent)


def test_approved_policy_passes_and_records_the_approver(setup: dict[str, Path]) -> None:
    path, st_ = approve(setup["policy"], setup["key"], "Alice Privacy")
    assert path == setup["dir"] / "mini.approval.json"
    rec = check(setup)
    assert rec["required"] is True and rec["approver"] == "Alice Privacy"
    assert rec["policy_sha256"] == policy_content_sha256(setup["policy"].read_bytes())
    assert st_["subjects"][0] == {"name": "policy", "kind": "policy", "sha256": rec["policy_sha256"]}
    assert rec["key_name"] == "Alice Privacy"


def test_unsigned_policy_is_refused_naming_policy_and_reason(setup: dict[str, Path]) -> None:
    with pytest.raises(BlockedError) as e:
        check(setup)
    assert str(setup["policy"]) in e.value.message and "no approval signature found" in e.value.message


def test_one_character_change_after_approval_is_refused(setup: dict[str, Path]) -> None:
    approve(setup["policy"], setup["key"], "Alice Privacy")
    text = setup["policy"].read_text()
    setup["policy"].write_text(text.replace("Mini test dataset", "Mini test datasat"))
    with pytest.raises(BlockedError) as e:
        check(setup)
    assert "changed after Alice Privacy approved it" in e.value.message
    assert str(setup["policy"]) in e.value.message


def test_untrusted_key_is_refused(setup: dict[str, Path]) -> None:
    other, _, kid = generate(setup["dir"] / "mallory")
    approve(setup["policy"], other, "Mallory")
    with pytest.raises(BlockedError) as e:
        check(setup)
    assert f"key {kid}, which is not in the trusted keyring" in e.value.message


def test_release_key_cannot_approve(setup: dict[str, Path]) -> None:
    """A keyring trusts a key for one kind: the deployment's release key is no approver."""
    rel, _, _ = generate(setup["dir"] / "release.pem", kind="release")
    Keyring.add(setup["keyring"], load_private(rel).public_key(), "Release key", "release")
    approve(setup["policy"], rel, "Release key")
    with pytest.raises(BlockedError, match="not in the trusted keyring"):
        check(setup)


def test_forged_statement_breaks_the_signature(setup: dict[str, Path]) -> None:
    path, _ = approve(setup["policy"], setup["key"], "Alice Privacy")
    doc = json.loads(path.read_text())
    st_ = json.loads(base64.b64decode(doc["payload"]))
    st_["approver"] = "Chief of Police"
    doc["payload"] = base64.b64encode(json.dumps(st_, sort_keys=True, separators=(",", ":")).encode()).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(BlockedError, match="signature does not verify"):
        check(setup)


def test_first_format_approval_is_refused_with_instructions(setup: dict[str, Path]) -> None:
    (setup["dir"] / "mini.approval.json").write_text(json.dumps({
        "purpose": "release-policy-approval/v1", "policy_sha256": "0" * 64, "approver": "Alice Privacy",
        "key_id": "00", "signed_utc": "2026-01-01T00:00:00+00:00", "signature": "AA=="}))
    with pytest.raises(BlockedError, match="first format.*re-approve it with `release policy approve`"):
        check(setup)


def test_line_endings_do_not_change_the_content_hash(setup: dict[str, Path]) -> None:
    data = setup["policy"].read_bytes()
    assert policy_content_sha256(data) == policy_content_sha256(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))


def test_without_configuration_approval_is_still_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEASE_CONFIG", raising=False)
    pol = write_policy(tmp_path / "p.yaml", mini_policy())
    t = TrustedFiles()
    with pytest.raises(BlockedError, match="required by default"):
        check_policy_approval(parse_policy(pol.read_text()), pol, pol.read_bytes(), {}, t)
    t.close()


def test_only_explicit_false_turns_approval_off(tmp_path: Path) -> None:
    cfg = tmp_path / "release.toml"
    cfg.write_text("[approval]\n")
    assert load_approval_config({"config": str(cfg)}).required is True
    cfg.write_text("[approval]\nrequired = false\n")
    a = load_approval_config({"config": str(cfg)})
    assert a.required is False and a.explicit_off


def test_approvals_folder_from_configuration(setup: dict[str, Path]) -> None:
    setup["config"].write_text('[approval]\nrequired = true\nkeyring = "keyring.json"\napprovals = "signed"\n')
    cfg = load_approval_config(opts(setup))
    path, _ = approve(setup["policy"], setup["key"], "Alice Privacy", cfg=cfg)
    assert path == setup["dir"] / "signed" / "mini.approval.json"
    assert candidate_paths(setup["policy"], cfg)[0] == path
    assert check(setup)["approval_file"] == "mini.approval.json"


@pytest.mark.parametrize("text,msg", [
    ("[approval]\nrequired = 1\nkeyring = 'k'\n", "must be true or false"),
    ("[approval]\nrequird = true\n", "approval.requird: unknown key.*did you mean 'required'"),
    ("[approval\n", "not valid TOML"),
    ("[signing]\nkey = 3\n", "signing.key must be a path string"),
])
def test_bad_configuration_is_a_usage_error(tmp_path: Path, text: str, msg: str) -> None:
    cfg = tmp_path / "release.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=msg):
        load_approval_config({"config": str(cfg)})


def test_subjects_compare_by_name_and_hash() -> None:
    approved = [{"name": "policy", "sha256": "a"}, {"name": "network", "kind": "network", "sha256": "b"}]
    assert compare_subjects(approved, [{"name": "policy", "kind": "policy", "sha256": "a"},
                                       {"name": "network", "kind": "network", "sha256": "b"}], "A", "t") == []
    diff = compare_subjects(approved, [{"name": "policy", "kind": "policy", "sha256": "a"},
                                       {"name": "network", "kind": "network", "sha256": "c"},
                                       {"name": "hoods", "kind": "layer", "sha256": "d"}], "A", "t")
    assert any("network 'network' differs from the approved file" in d for d in diff)
    assert any("layer 'hoods' is read by this release but not covered" in d for d in diff)
    assert compare_subjects(approved, [{"name": "policy", "kind": "policy", "sha256": "a"}], "A", "t") == [
        "network 'network' was approved but this release does not read it"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_any_byte_change_invalidates_the_approval(setup: dict[str, Path], pos: int, byte: int) -> None:
    path = setup["dir"] / "fixed.approval.json"
    if not path.exists():
        approve(setup["policy"], setup["key"], "Alice Privacy", out=path)
    statement, _ = verify_envelope(json.loads(path.read_text()), Keyring.load(setup["keyring"]), str(path))
    data = bytearray(setup["policy"].read_bytes())
    i = pos % len(data)
    if data[i] == byte or byte == 13:
        return
    data[i] = byte
    diff = compare_subjects(statement["subjects"], [{"name": "policy", "kind": "policy",
                                                     "sha256": policy_content_sha256(bytes(data))}], "A", "t")
    assert diff and "changed after" in diff[0]


def test_tampered_envelope_is_a_problem_not_a_crash(setup: dict[str, Path]) -> None:
    for doc in ([], {"payloadType": "x"}, {"payloadType": "application/vnd.release-engine.approval+json;version=2",
                                           "payload": "!!", "signatures": [{"sig": "AA=="}]}):
        with pytest.raises(ApprovalProblem):
            verify_envelope(doc, Keyring.load(setup["keyring"]), "x")
