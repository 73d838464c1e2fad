"""Signed bundles: a detached Ed25519 signature over manifest.json's exact bytes, with a type tag.

The release key is the deployment's (release.toml [signing] key), distinct from approvers' keys.
Test-mode runs sign only with the test key, whose private half is public: no keyring may trust it,
and the payload type says `mode=test`, so a test bundle can never pass as a production one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from release.context import test_mode
from release.errors import UsageError
from release.governance.approval import pae
from release.governance.config import load_config
from release.governance.keys import Keyring, key_id, load_private, test_key, test_key_id, verify

MANIFEST_TYPE = "application/vnd.release-engine.manifest+json;version=1"
SIGNATURE_FILE = "manifest.sig"


def payload_type(test: bool) -> str:
    return MANIFEST_TYPE + (";mode=test" if test else ";mode=production")


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey
    key_id: str
    test: bool

    def sign(self, manifest_bytes: bytes) -> bytes:
        t = payload_type(self.test)
        sig = self.key.sign(pae(t, manifest_bytes))
        doc = {"payloadType": t, "signatures": [{"keyid": self.key_id, "sig": base64.b64encode(sig).decode("ascii")}]}
        return (json.dumps(doc, indent=2) + "\n").encode()


def release_signer(options: dict[str, Any]) -> Signer:
    """The run's signer, found before any record is read: the test key in test mode, else the configured key."""
    if test_mode():
        key = test_key()
        return Signer(key, key_id(key.public_key()), True)
    cfg = load_config(options)
    if cfg.signing.key is None:
        where = f"configuration {cfg.source}" if cfg.source else "no configuration (release.toml)"
        raise UsageError(f"no release key to sign the bundle with: {where} has no [signing] key; make one with"
                         " `release keygen --kind release --out keys/release.pem` and name it there")
    key = load_private(cfg.signing.key)
    kid = key_id(key.public_key())
    if kid == test_key_id():
        raise UsageError(f"{cfg.signing.key}: the test-mode key cannot sign production releases")
    return Signer(key, kid, False)


@dataclass
class SignatureResult:
    status: str
    "pass | fail | integrity-only | legacy"
    message: str
    test: bool = False


def verify_manifest(manifest_bytes: bytes, sig_bytes: bytes | None, options: dict[str, Any]) -> SignatureResult:
    """Verify the detached signature over the manifest bytes against the verifier's release keyring."""
    if sig_bytes is None:
        return SignatureResult("legacy", "unsigned (legacy): the bundle has no manifest.sig (published before bundles"
                                         " were signed); pass --allow-legacy to check it anyway")
    try:
        doc = json.loads(sig_bytes)
        t = doc["payloadType"]
        sigs = doc["signatures"]
        if not isinstance(t, str) or not isinstance(sigs, list) or len(sigs) != 1:
            raise ValueError
        kid, sig = sigs[0]["keyid"], base64.b64decode(sigs[0]["sig"], validate=True)
        if not isinstance(kid, str):
            raise ValueError
    except (ValueError, KeyError, TypeError, IndexError):
        return SignatureResult("fail", "manifest.sig is not a signature envelope (payloadType, one signature with"
                                       " keyid and sig)")
    if t not in (payload_type(True), payload_type(False)):
        return SignatureResult("fail", f"manifest.sig: unknown payload type {t[:80]!r}")
    test = t == payload_type(True)
    if test:
        if kid != test_key_id() or not verify(test_key().public_key(), sig, pae(t, manifest_bytes)):
            return SignatureResult("fail", "manifest.sig: a test-mode signature that does not verify", True)
        if not test_mode():
            return SignatureResult("fail", "signed with the public test-mode key: a test release, never trusted"
                                           " outside test mode", True)
        return SignatureResult("pass", "signed with the test-mode key (trusted in test mode only)", True)
    cfg = load_config(options)
    if cfg.signing.keyring is None:
        return SignatureResult("integrity-only", "integrity only: no trusted release keyring configured"
                                                 " (release.toml [signing] keyring), so nobody vouches for this"
                                                 " bundle; that is not a pass")
    keyring = Keyring.load(cfg.signing.keyring, "release")
    trusted = keyring.keys.get(kid)
    if trusted is None:
        return SignatureResult("fail", f"manifest.sig: signed with key {kid}, which is not in the trusted release"
                                       f" keyring {cfg.signing.keyring}")
    if not verify(trusted.key, sig, pae(t, manifest_bytes)):
        return SignatureResult("fail", "manifest.sig does not verify over manifest.json (the manifest was changed"
                                       " after signing)")
    return SignatureResult("pass", f"manifest signed by release key {kid} ({trusted.name}), trusted by"
                                   f" {cfg.signing.keyring.name}")
