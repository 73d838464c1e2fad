"""Ed25519 keys (approvers' and release keys): generation, PEM files, key ids, keyrings of trusted keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from release.errors import UsageError

PRIVATE_NAME = "approval-key.pem"
PUBLIC_NAME = "approval-key.pub.pem"
KINDS = ("approver", "release")
"An approver key signs policy approvals; a release key signs bundles. A keyring trusts a key for one kind only."
_DEFAULT_NAMES = {"approver": (PRIVATE_NAME, PUBLIC_NAME), "release": ("release-key.pem", "release-key.pub.pem")}

_TEST_SEED = hashlib.sha256(b"release-engine test-mode release key: public, never trusted in production").digest()


def test_key() -> Ed25519PrivateKey:
    """The key test-mode runs sign with. Its private half is public knowledge, so no production keyring trusts it."""
    return Ed25519PrivateKey.from_private_bytes(_TEST_SEED)


def test_key_id() -> str:
    return key_id(test_key().public_key())


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of sha256 of its raw bytes."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def key_paths(out: Path, kind: str = "approver") -> tuple[Path, Path]:
    """`out` ending in .pem names the private key (public half beside it as .pub.pem); else a folder."""
    if out.suffix == ".pem":
        return out, out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    priv, pub = _DEFAULT_NAMES[kind]
    return out / priv, out / pub


def generate(out: Path, name: str | None = None, kind: str = "approver") -> tuple[Path, Path, str]:
    """Write a fresh key pair at `out` (private key mode 0600); refuse to overwrite one."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    priv_path, pub_path = key_paths(out, kind)
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    for p in (priv_path, pub_path):
        if p.exists():
            raise UsageError(f"{p}: already exists; an approval key is never overwritten (choose another --out)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Created with 0600 from the start so the private key is never readable by others, even briefly.
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    pub_path.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path, key_id(pub)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"{path}: not a readable unencrypted PEM private key ({type(e).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 private key (make one with `release keygen`)")
    return key


def load_public_pem(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: not a PEM public key ({type(e).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where}: not an Ed25519 public key")
    return key


def public_from_b64(text: str, where: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: not a base64 Ed25519 public key ({type(e).__name__})") from None


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    name: str
    key: Ed25519PublicKey
    kind: str = "approver"


class Keyring:
    """Trusted keys of one kind: a JSON file {"keys": [{"name", "kind", "public_key" (base64 raw)}]}.

    An entry without "kind" is an approver key (the first keyring format). The test-mode release
    key is never trusted: a keyring that lists it is refused.
    """

    def __init__(self, path: Path, keys: dict[str, TrustedKey]) -> None:
        self.path = path
        self.keys = keys

    @classmethod
    def load(cls, path: Path, kind: str = "approver") -> Keyring:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UsageError(f"keyring {path}: cannot be read ({e.strerror})") from None
        except ValueError:
            raise UsageError(f"keyring {path}: not valid JSON") from None
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise UsageError(f"keyring {path}: expected an object with a list \"keys\"")
        keys: dict[str, TrustedKey] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "public_key" not in entry:
                raise UsageError(f"keyring {path}: keys[{i}] needs \"public_key\"")
            pub = public_from_b64(str(entry["public_key"]), f"keyring {path}: keys[{i}].public_key")
            kid = key_id(pub)
            if kid == test_key_id():
                raise UsageError(f"keyring {path}: keys[{i}] is the test-mode release key, whose private half is"
                                 " public; a keyring must never trust it (remove that entry)")
            entry_kind = str(entry.get("kind", "approver"))
            if entry_kind == kind:
                keys[kid] = TrustedKey(kid, str(entry.get("name", kid)), pub, entry_kind)
        return cls(path, keys)

    @staticmethod
    def add(path: Path, pub: Ed25519PublicKey, name: str, kind: str = "approver") -> str:
        """Add a public key to a keyring file (created when absent); return its key id."""
        doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"keys": []}
        kid = key_id(pub)
        entries = [e for e in doc.get("keys", []) if e.get("key_id") != kid]
        entries.append({"key_id": kid, "name": name, "kind": kind,
                        "public_key": base64.b64encode(raw_public(pub)).decode("ascii")})
        doc["keys"] = entries
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return kid
