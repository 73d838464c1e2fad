"""Signed policy approval: a statement naming the policy and every file a release reads, signed by an approver.

The statement's bytes are signed with a type tag (DSSE's pre-authentication encoding), verified as
bytes, and only then parsed. Its subjects are the policy (content sha256) and each referenced file
(network, addresses, area layers, hierarchies) by logical name and sha256; a run whose files
differ from the subjects is refused before any record is read.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from release.errors import BlockedError, UsageError
from release.governance.config import ApprovalConfig, load_config
from release.governance.keys import Keyring, key_id, load_private, verify
from release.governance.trusted import TrustedFiles, read_once, referenced_files

PAYLOAD_TYPE = "application/vnd.release-engine.approval+json;version=2"
LEGACY_PURPOSE = "release-policy-approval/v1"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is signed names its type, so one kind of statement can't pass as another."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


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


def subjects_for(policy: Any, policy_path: Path, policy_bytes: bytes, options: dict[str, Any],
                 trusted: TrustedFiles) -> list[dict[str, str]]:
    """The policy and every referenced file, each read once through `trusted`: what an approval covers."""
    subjects = [{"name": "policy", "kind": "policy", "sha256": policy_content_sha256(policy_bytes)}]
    for name, kind, path in referenced_files(policy, policy_path, options):
        trusted.take(name, kind, path)
        subjects.append({"name": name, "kind": kind, "sha256": trusted.subjects[name].sha256})
    return subjects


def sign_statement(key_path: Path, statement: dict[str, Any]) -> dict[str, Any]:
    key = load_private(key_path)
    body = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode("ascii"),
            "signatures": [{"keyid": key_id(key.public_key()),
                            "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, body))).decode("ascii")}]}


def approve(policy_path: Path, key_path: Path, approver: str, out: Path | None = None,
            now: datetime | None = None, cfg: ApprovalConfig | None = None,
            options: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Sign the policy and every file it references as `approver`; write the approval file and return it."""
    if not approver.strip():
        raise UsageError("--by: the approver's name must not be empty")
    from release.governance.config import file_options
    from release.policy.loader import parse_policy

    data = read_once(policy_path, "policy")
    # Only a policy that validates can be approved: a signature on a broken policy helps nobody.
    policy = parse_policy(_decode(data, policy_path), str(policy_path))
    trusted = TrustedFiles()
    try:
        subjects = subjects_for(policy, policy_path, data, file_options(dict(options or {})), trusted)
    finally:
        trusted.close()
    statement = {"approver": approver.strip(), "policy": policy_path.name,
                 "signed_utc": (now or datetime.now(UTC)).isoformat(timespec="seconds"), "subjects": subjects}
    doc = sign_statement(key_path, statement)
    target = out or approval_path(policy_path, cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return target, {**statement, "key_id": doc["signatures"][0]["keyid"]}


def _decode(data: bytes, path: Path) -> str:
    from release.errors import PolicyError

    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: not UTF-8 text (byte {e.start})") from None


class ApprovalProblem(Exception):
    """Why an approval does not hold (the text is shown to the user)."""


def parse_envelope(doc: Any, where: str) -> tuple[bytes, str, bytes]:
    """(payload bytes, key id, signature) of an approval envelope, or ApprovalProblem."""
    if isinstance(doc, dict) and doc.get("purpose") == LEGACY_PURPOSE:
        raise ApprovalProblem(f"{where} is an approval in the first format, which covers the policy text only;"
                              " re-approve it with `release policy approve` (the new approval also covers the"
                              " network, address and area files the release reads)")
    if not isinstance(doc, dict) or doc.get("payloadType") != PAYLOAD_TYPE:
        raise ApprovalProblem(f"{where} is not a policy approval (payloadType {PAYLOAD_TYPE} expected)")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise ApprovalProblem(f"{where}: expected exactly one signature")
    kid, sig = sigs[0].get("keyid"), sigs[0].get("sig")
    if not isinstance(kid, str) or not isinstance(sig, str) or not isinstance(doc.get("payload"), str):
        raise ApprovalProblem(f"{where}: the signature lacks its keyid, sig or payload")
    try:
        return base64.b64decode(doc["payload"], validate=True), kid, base64.b64decode(sig, validate=True)
    except ValueError:
        raise ApprovalProblem(f"{where}: payload or signature is not base64") from None


def verify_envelope(doc: Any, keyring: Keyring, where: str) -> tuple[dict[str, Any], str]:
    """Verify the signature over the exact payload bytes with a key of `keyring`; then parse. (statement, signer)."""
    body, kid, sig = parse_envelope(doc, where)
    trusted = keyring.keys.get(kid)
    if trusted is None:
        try:
            claimed = f" by {json.loads(body).get('approver')!r} (an unverified claim)"
        except (ValueError, AttributeError):
            claimed = ""
        raise ApprovalProblem(f"{where}: signed{claimed} with key {kid}, which is not in the trusted keyring"
                              f" {keyring.path}")
    if not verify(trusted.key, sig, pae(PAYLOAD_TYPE, body)):
        raise ApprovalProblem(f"{where}: the signature does not verify (the approval was altered or forged)")
    try:
        statement = json.loads(body)
    except ValueError:
        raise ApprovalProblem(f"{where}: the signed statement is not JSON") from None
    if (not isinstance(statement, dict) or not isinstance(statement.get("approver"), str)
            or not isinstance(statement.get("subjects"), list)):
        raise ApprovalProblem(f"{where}: the signed statement lacks approver or subjects")
    return statement, trusted.name


def compare_subjects(approved: list[Any], actual: list[dict[str, str]], approver: str, signed: str) -> list[str]:
    """Differences between what was approved and what this release reads, one line each (empty: they match)."""
    want = {s.get("name"): s for s in approved if isinstance(s, dict)}
    got = {s["name"]: s for s in actual}
    out = []
    for name in sorted(set(want) | set(got), key=str):
        w, g = want.get(name), got.get(name)
        label = "the policy" if name == "policy" else f"{(w or g or {}).get('kind', 'file')} {name!r}"
        if w is None:
            out.append(f"{label} is read by this release but not covered by the approval")
        elif g is None:
            out.append(f"{label} was approved but this release does not read it")
        elif w.get("sha256") != g["sha256"]:
            if name == "policy":
                out.append(f"the policy changed after {approver} approved it on {signed} (content sha256 now "
                           f"{g['sha256'][:12]}…, approved {str(w.get('sha256'))[:12]}…)")
            else:
                out.append(f"{label} differs from the approved file (sha256 now {g['sha256'][:12]}…, approved "
                           f"{str(w.get('sha256'))[:12]}…)")
    return out


def check_policy_approval(policy: Any, policy_path: Path, policy_bytes: bytes, options: dict[str, Any],
                          trusted: TrustedFiles) -> dict[str, Any]:
    """The approval record for a run (read once, files snapshotted); BlockedError when it does not hold."""
    cfg = load_config(options).approval
    subjects = subjects_for(policy, policy_path, policy_bytes, options, trusted)
    trusted.sealed = {s["name"] for s in subjects}
    if not cfg.required:
        return {"required": False, "subjects": subjects}

    def refuse(reason: str) -> BlockedError:
        where = (f"configuration: {cfg.source} (approval is required unless it says `required = false`)"
                 if cfg.source else "no configuration found (release.toml, --config or $RELEASE_CONFIG): approval"
                 " is required by default; configure [approval] keyring, or say `required = false` explicitly")
        return BlockedError(f"policy {policy_path} is not approved: {reason}; nothing was run or published",
                            details=[where])

    if cfg.source is None:
        raise refuse("no configuration found (release.toml, --config or $RELEASE_CONFIG), and approval is required"
                     " by default: configure a trusted approver keyring, or say `[approval] required = false`")
    if cfg.keyring is None:
        raise refuse("no trusted approver keyring is configured ([approval] keyring in release.toml)")
    keyring = Keyring.load(cfg.keyring, "approver")
    looked = candidate_paths(policy_path, cfg)
    found = [p for p in looked if p.is_file()]
    if not found:
        raise refuse("no approval signature found (looked for " + ", ".join(str(p) for p in looked) +
                     "); sign it with `release policy approve`")
    problems = []
    for p in found:
        try:
            doc = json.loads(read_once(p, "approval"))
        except ValueError:
            problems.append(f"approval file {p} is not valid JSON")
            continue
        try:
            statement, key_name = verify_envelope(doc, keyring, f"approval file {p}")
        except ApprovalProblem as e:
            problems.append(str(e))
            continue
        diff = compare_subjects(statement["subjects"], subjects, statement["approver"],
                                str(statement.get("signed_utc")))
        if diff:
            problems.append("; ".join(diff))
            continue
        return {"required": True, "approver": statement["approver"], "key_id": doc["signatures"][0]["keyid"],
                "key_name": key_name, "signed_utc": statement.get("signed_utc"),
                "policy_sha256": subjects[0]["sha256"], "subjects": subjects, "envelope": doc,
                "approval_file": p.name}
    raise refuse("; ".join(problems))


def pre_output(policy: Any, ctx: Any) -> None:
    """PRE_OUTPUT hook: the approval record goes into the manifest (who approved what)."""
    ctx.manifest["approval"] = ctx.options.get("_approval", {"required": False})


def pre_run(policy: Any, policy_path: Path, options: dict[str, Any]) -> None:
    """PRE_RUN hook (first of all): the approval must cover the policy bytes and every file, before any is used."""
    options["_approval"] = check_policy_approval(policy, Path(policy_path), options["_policy_bytes"], options,
                                                 options["_trusted"])
