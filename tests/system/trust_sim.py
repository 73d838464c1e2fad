"""A small deployment and bundle simulator for the trust-chain attack tests (python-tuf's RepositorySimulator idea).

`Deployment` makes a working folder with an approver key, a release key, both keyrings and a
release.toml that requires approval; `forge` copies a bundle, changes one thing, re-hashes the
manifest as a careful forger would and re-signs it with the key of the forger's choice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from release.cli import main
from release.governance.keys import key_id, test_key
from release.governance.signing import Signer


class Deployment:
    """A deployment in `root`: keys/approver.pem, keys/release.pem, keyrings, release.toml, approvals/."""

    def __init__(self, root: Path, files: dict[str, Path] | None = None, layers: dict[str, Path] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for kind in ("approver", "release"):
            r = self.cli("keygen", "--kind", kind, "--out", f"keys/{kind}.pem", "--keyring",
                         "keys/approvers.json" if kind == "approver" else "keys/release-keyring.json",
                         "--name", f"Test {kind}")
            assert r.exit_code == 0, r.output
        text = ('[approval]\nrequired = true\nkeyring = "keys/approvers.json"\napprovals = "approvals"\n\n'
                '[signing]\nkey = "keys/release.pem"\nkeyring = "keys/release-keyring.json"\n\n'
                '[internal]\nfolder = "internal"\n')
        if files:
            text += "\n[files]\n" + "".join(f"{k} = {json.dumps(str(v))}\n" for k, v in files.items())
        if layers:
            text += "\n[files.layers]\n" + "".join(f"{k} = {json.dumps(str(v))}\n" for k, v in layers.items())
        self.config = root / "release.toml"
        self.config.write_text(text)

    def cli(self, *args: str, env: dict[str, str | None] | None = None) -> Any:
        old = Path.cwd()
        os.chdir(self.root)
        try:
            return CliRunner(env={"RELEASE_CONFIG": None, **(env or {})}).invoke(main, list(args))
        finally:
            os.chdir(old)

    def approve(self, policy: Path, *extra: str) -> Any:
        r = self.cli("policy", "approve", str(policy), "--key", "keys/approver.pem", "--by", "Dana Reyes", *extra)
        assert r.exit_code == 0, r.output
        return r

    def run(self, policy: Path, records: Path, out: Path, *extra: str, env: dict[str, str | None] | None = None) -> Any:
        return self.cli("run", str(policy), "--input", str(records), "--out", str(out), "--json", "-q", *extra, env=env)

    def check(self, bundle: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        r = self.cli("check", str(bundle), "--json", *extra)
        assert r.exit_code in (0, 1), r.output
        return r.exit_code, json.loads(r.stdout)


def failed(result: dict[str, Any]) -> dict[str, list[str]]:
    """check name -> messages of the failed (not skipped) findings."""
    out: dict[str, list[str]] = {}
    for f in result["findings"]:
        if f["status"] == "fail":
            out.setdefault(f["check"], []).append(f["message"])
    return out


def rehash(bundle: Path) -> None:
    """The manifest's file list and hashes rewritten to match the files (and datapackage's CSV hashes)."""
    man = json.loads((bundle / "manifest.json").read_text())
    dp = bundle / "datapackage.json"
    try:
        doc = json.loads(dp.read_text()) if dp.is_file() else None
    except ValueError:
        doc = None  # a datapackage the forger broke stays broken
    try:
        for r in doc.get("resources", []) if doc is not None else []:
            p = bundle / r["path"]
            if p.is_file():
                r["hash"] = "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
        if doc is not None:
            dp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    except (AttributeError, TypeError, KeyError):
        pass  # a datapackage the forger broke stays broken
    names = sorted(p.name for p in bundle.iterdir() if p.name not in ("manifest.json", "manifest.sig")
                   and p.is_file() and not p.name.startswith("."))
    man["files"] = {n: hashlib.sha256((bundle / n).read_bytes()).hexdigest() for n in names}
    man["policy_sha256"] = hashlib.sha256((bundle / "policy.yaml").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n")


def sign_with(bundle: Path, key: Ed25519PrivateKey, test: bool) -> None:
    (bundle / "manifest.sig").write_bytes(Signer(key, key_id(key.public_key()), test).sign(
        (bundle / "manifest.json").read_bytes()))


def forge(bundle: Path, dest: Path, change: Callable[[Path], None], *, key: Ed25519PrivateKey | None = None,
          test: bool = True) -> Path:
    """A copy of `bundle` with one change, re-hashed and re-signed (default: the insider's trusted test key)."""
    target = dest / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target, symlinks=True)
    change(target)
    rehash(target)
    sign_with(target, key or test_key(), test)
    return target
