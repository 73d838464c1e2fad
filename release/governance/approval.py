"""Signed policy approval: sign a policy's canonical content hash, verify it before a run and in a bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from release.errors import BlockedError, UsageError
from release.governance.config import ApprovalConfig, load_approval_config
from release.governance.keys import (
    Keyring,
    key_id,
    load_private,
    public_from_b64,
    raw_public,
    verify,
)

PURPOSE = "release-policy-approval/v1"
SIGNED_FIELDS = ("purpose", "policy_sha256", "approver", "key_id", "signed_utc")


def canonical_policy_bytes(data: bytes) -> bytes:
    """The policy text as signed: UTF-8 without BOM, LF line endings.

    Every other byte counts, comments included: a comment can carry the privacy office's
    reasoning, and a reviewer must see exactly what was approved.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.replace(b"\r\n", b"\n")


def policy_content_sha256(data: bytes) -> str:
    return hashlib.sha256(canonical_policy_bytes(data)).hexdigest()


def _statement(fields: dict[str, Any]) -> bytes:
    return json.dumps({k: fields[k] for k in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def approval_path(policy_path: Path, cfg: ApprovalConfig | None = None) -> Path:
    """Where the approval of a policy is written: the configured folder, else beside the policy."""
    name = f"{policy_path.stem}.approval.json"
    if cfg is not None and cfg.approvals is not None:
        return cfg.approvals / name
    return policy_path.with_name(name)


def candidate_paths(policy_path: Path, cfg: ApprovalConfig) -> list[Path]:
    out = [approval_path(policy_path, cfg)]
    beside = approval_path(policy_path, None)
    if beside not in out:
        out.append(beside)
    return out


def approve(policy_path: Path, key_path: Path, approver: str, out: Path | None = None,
            now: datetime | None = None, cfg: ApprovalConfig | None = None) -> tuple[Path, dict[str, Any]]:
    """Sign the policy's content hash as `approver`; write the approval file and return it."""
    if not approver.strip():
        raise UsageError("--by: the approver's name must not be empty")
    try:
        data = policy_path.read_bytes()
    except OSError as e:
        raise UsageError(f"{policy_path}: cannot be read ({e.strerror})") from None
    # Only a policy that validates can be approved: a signature on a broken policy helps nobody.
    from release.policy.loader import load_policy

    load_policy(policy_path)
    key = load_private(key_path)
    pub = key.public_key()
    fields: dict[str, Any] = {
        "purpose": PURPOSE,
        "policy_sha256": policy_content_sha256(data),
        "approver": approver.strip(),
        "key_id": key_id(pub),
        "signed_utc": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    doc = {**fields, "policy": policy_path.name,
           "public_key": base64.b64encode(raw_public(pub)).decode("ascii"),
           "signature": base64.b64encode(key.sign(_statement(fields))).decode("ascii")}
    target = out or approval_path(policy_path, cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return target, doc


class ApprovalProblem(Exception):
    """Why an approval does not hold (the text is shown to the user)."""


def _read_approval(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ApprovalProblem(f"approval file {path} is not valid JSON") from None
    missing = [k for k in (*SIGNED_FIELDS, "signature") if not isinstance(doc.get(k), str)]
    if not isinstance(doc, dict) or missing:
        raise ApprovalProblem(f"approval file {path} lacks {', '.join(missing) or 'its fields'}")
    if doc["purpose"] != PURPOSE:
        raise ApprovalProblem(f"approval file {path} is not a policy approval ({doc['purpose']!r})")
    return doc


def verify_approval(doc: dict[str, Any], policy_bytes: bytes, keyring: Keyring | None,
                    where: str) -> dict[str, Any]:
    """Check one approval against the policy and the keyring; return the manifest record or raise."""
    kid = doc["key_id"]
    if keyring is not None:
        trusted = keyring.keys.get(kid)
        if trusted is None:
            raise ApprovalProblem(f"signed by {doc['approver']!r} with key {kid}, which is not in the trusted "
                                  f"keyring {keyring.path}")
        pub, key_name = trusted.key, trusted.name
    else:
        # Without a keyring only self-consistency can be shown (used by `release check` on a bundle).
        if not isinstance(doc.get("public_key"), str):
            raise ApprovalProblem(f"{where}: no public key recorded to verify the signature with")
        pub, key_name = public_from_b64(doc["public_key"], where), None
        if key_id(pub) != kid:
            raise ApprovalProblem(f"{where}: key_id {kid} does not belong to the recorded public key")
    try:
        sig = base64.b64decode(doc["signature"], validate=True)
    except ValueError:
        raise ApprovalProblem(f"{where}: signature is not base64") from None
    if not verify(pub, sig, _statement(doc)):
        raise ApprovalProblem(f"{where}: the signature does not verify (the approval was altered or forged)")
    now_sha = policy_content_sha256(policy_bytes)
    if now_sha != doc["policy_sha256"]:
        raise ApprovalProblem(f"the policy changed after {doc['approver']} approved it on {doc['signed_utc']} "
                              f"(content sha256 now {now_sha[:12]}…, approved {doc['policy_sha256'][:12]}…)")
    rec = {"required": True, "approver": doc["approver"], "key_id": kid, "signed_utc": doc["signed_utc"],
           "policy_sha256": doc["policy_sha256"], "signature": doc["signature"],
           "public_key": base64.b64encode(raw_public(pub)).decode("ascii")}
    if key_name is not None:
        rec["key_name"] = key_name
    return rec


def check_policy_approval(policy_path: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The approval record for a run; raises BlockedError when the configuration requires one that fails."""
    cfg = load_approval_config(options)
    if not cfg.required:
        return {"required": False}
    assert cfg.keyring is not None
    keyring = Keyring.load(cfg.keyring)
    data = policy_path.read_bytes()
    looked = candidate_paths(policy_path, cfg)
    found = [p for p in looked if p.is_file()]

    def refuse(reason: str) -> BlockedError:
        return BlockedError(f"policy {policy_path} is not approved: {reason}; nothing was run or published",
                            details=[f"configuration: {cfg.source} (approval.required = true)"])

    if not found:
        raise refuse("no approval signature found (looked for " + ", ".join(str(p) for p in looked) +
                     "); sign it with `release policy approve`")
    problems = []
    for p in found:
        try:
            rec = verify_approval(_read_approval(p), data, keyring, str(p))
        except ApprovalProblem as e:
            problems.append(str(e))
            continue
        rec["approval_file"] = p.name
        return rec
    raise refuse("; ".join(problems))


def pre_run(policy: Any, policy_path: Path, options: dict[str, Any]) -> None:
    """PRE_RUN hook: before any record is read or budget reserved, the policy must be approved if required."""
    options["_approval"] = check_policy_approval(Path(policy_path), options)


def pre_output(policy: Any, ctx: Any) -> None:
    """PRE_OUTPUT hook: the approval record goes into the manifest (who approved what)."""
    ctx.manifest["approval"] = ctx.options.get("_approval", {"required": False})
