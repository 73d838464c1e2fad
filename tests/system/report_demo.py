"""One small demo run shared by the report, gate and approval system tests (built once per session)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from release.demo import run_demo

DEMO_RECORDS = 3000


def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{"out", "work", "rows", "bundles": {dataset: bundle dir}} of one demo run with the bundled policies."""
    base = tmp_path_factory.mktemp("report-demo")
    rows = run_demo(base / "out", DEMO_RECORDS, base / "work", None, progress=lambda _m: None)
    bundles = {}
    for d in sorted((base / "out").iterdir()):
        if d.name.startswith("."):
            continue
        found = sorted(p for p in d.iterdir() if (p / "manifest.json").is_file())
        if found:
            bundles[d.name] = found[-1]
    if not bundles:
        pytest.fail(f"the demo produced no bundle: {rows}")
    return {"out": base / "out", "work": base / "work", "rows": rows, "bundles": bundles}


def copy_bundle(bundle: Path, dest: Path) -> Path:
    """A private copy of a demo bundle (with the same dataset/release layout) to tamper with."""
    target = dest / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    return target


def rehash(bundle: Path) -> None:
    """Make manifest.json (and datapackage.json's hashes) match the files again, as a careful forger would."""
    man = json.loads((bundle / "manifest.json").read_text())
    dp_path = bundle / "datapackage.json"
    if dp_path.is_file():
        dp = json.loads(dp_path.read_text())
        for r in dp.get("resources", []):
            p = bundle / r["path"]
            if p.is_file():
                r["hash"] = "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
        dp_path.write_text(json.dumps(dp, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    man["files"] = {rel: hashlib.sha256((bundle / rel).read_bytes()).hexdigest() for rel in man["files"]
                    if (bundle / rel).is_file()}
    if (bundle / "policy.yaml").is_file():
        man["policy_sha256"] = hashlib.sha256((bundle / "policy.yaml").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    resign(bundle)


def resign(bundle: Path) -> None:
    """Sign the manifest again with the key the suite's verifier trusts (the test-mode key): an insider
    holding the release key. Only the content stage can catch such a forger."""
    from release.governance.keys import key_id, test_key
    from release.governance.signing import Signer

    key = test_key()
    (bundle / "manifest.sig").write_bytes(Signer(key, key_id(key.public_key()), True).sign(
        (bundle / "manifest.json").read_bytes()))


def internal_of(bundle: Path) -> dict[str, Any]:
    p = internal_folder(bundle) / f"{bundle.name}.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def internal_folder(bundle: Path) -> Path:
    """The bundle's internal diagnostics folder: the demo's configured one (WORK/internal), else OUT.internal."""
    from tests.conftest import internal_dir

    demo = bundle.parent.parent.parent / "work" / "internal" / bundle.parent.name
    return demo if demo.is_dir() else internal_dir(bundle)
