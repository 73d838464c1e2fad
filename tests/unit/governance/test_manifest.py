"""manifest.json records schema and policy hashes, the approver, feature flags and per-output mechanisms."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from release.engine import run_release, schema_sha256
from release.governance.approval import approve
from release.governance.keys import Keyring, generate, load_private
from release.policy.loader import load_policy
from tests.system.mini import mini_policy, mini_records, write_policy


@pytest.fixture
def mini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEASE_CONFIG", raising=False)
    pol = write_policy(tmp_path / "mini.yaml", mini_policy())
    inp = tmp_path / "in.csv"
    mini_records().to_csv(inp, index=False)
    return pol, inp, tmp_path / "out"


def test_manifest_without_required_approval(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    (pol.parent / "release.toml").write_text("[approval]\nrequired = false\n")
    res = run_release(pol, inp, out, seed=1)
    assert res.bundle is not None
    man = json.loads((res.bundle / "manifest.json").read_text())
    assert man["approval"] == {"required": False} and man["approver"] is None
    assert man["schema_sha256"] == schema_sha256(load_policy(pol)) and len(man["schema_sha256"]) == 64
    assert man["policy_sha256"] == hashlib.sha256(pol.read_bytes()).hexdigest()
    assert man["features"]["approval_required"] is False and "release.report.render" in man["features"]["plugins"]
    assert man["outputs"] == [{"name": "records", "kind": "records",
                               "mechanism": ["record selection and generalization"], "budget": []}]
    assert "report.html" in man["files"]
    assert json.loads((res.bundle / "report.json").read_text())["approval"] == {"required": False}
    # The internal report sits outside the publication folder, never inside a bundle.
    internal = out.parent / "out.internal" / "mini" / f"{res.bundle.name}.report.html"
    assert not (out / ".internal").exists()
    assert internal.is_file() and "INTERNAL REPORT" in internal.read_text()
    assert not any("INTERNAL REPORT" in p.read_text(errors="ignore") for p in res.bundle.iterdir())


def test_schema_hash_changes_with_the_schema_only(tmp_path: Path) -> None:
    a = load_policy(write_policy(tmp_path / "a.yaml", mini_policy()))
    b = load_policy(write_policy(tmp_path / "b.yaml", mini_policy(dataset={"name": "other", "title": "x", "publisher": "test"})))
    p = mini_policy()
    p["input"]["columns"]["age"]["max"] = 110
    c = load_policy(write_policy(tmp_path / "c.yaml", p))
    assert schema_sha256(a) == schema_sha256(b) != schema_sha256(c)


def test_manifest_records_who_approved(mini: tuple[Path, Path, Path], tmp_path: Path) -> None:
    pol, inp, out = mini
    priv, _, kid = generate(tmp_path / "keys")
    Keyring.add(tmp_path / "keyring.json", load_private(priv).public_key(), "Office")
    (tmp_path / "release.toml").write_text('[approval]\nrequired = true\nkeyring = "keyring.json"\n')
    approve(pol, priv, "Dana Reyes")
    res = run_release(pol, inp, out, seed=1)
    man = json.loads((res.bundle / "manifest.json").read_text())  # type: ignore[operator]
    assert man["approver"] == "Dana Reyes" and man["approval"]["key_id"] == kid
    assert man["features"]["approval_required"] is True
    rep = json.loads((res.bundle / "report.json").read_text())  # type: ignore[operator]
    assert rep["approval"]["approver"] == "Dana Reyes" and "signature" not in rep["approval"]
    assert "Dana Reyes" in (res.bundle / "report.html").read_text()  # type: ignore[operator]
