"""Acceptance (issue 10): every attack on the trust chain found by the outside tester, each a test.

Run-time attacks: a policy served through a named pipe, referenced files edited after approval or
overridden on the command line, no configuration, a self-signed approval. Bundle attacks: every
file changed with the manifest rewritten and re-signed by an untrusted key; and, with the trusted
release key in an insider's hands, changes only the content stage can catch.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.governance.keys import test_key
from release.io.bundle import table_to_csv, table_to_geojson
from tests.conftest import POLICIES
from tests.system.mini import mini_policy, mini_records, write_policy
from tests.system.trust_sim import Deployment, failed, forge, rehash, sign_with

FILTERED = mini_policy(steps=[{"type": "filter", "exclude": {"column": "category", "equals": "Theft"},
                               "reason": "thefts are published elsewhere"},
                              *mini_policy()["steps"]])


@pytest.fixture
def office(tmp_path: Path) -> dict[str, Any]:
    d = Deployment(tmp_path / "office")
    pol = write_policy(d.root / "mini.yaml", FILTERED)
    inp = d.root / "in.csv"
    mini_records(300).to_csv(inp, index=False)
    return {"d": d, "policy": pol, "input": inp, "out": tmp_path / "publish"}


def published(out: Path) -> list[Path]:
    return sorted(b for d in out.iterdir() for b in d.iterdir()) if out.exists() else []


@pytest.fixture
def bundle(office: dict[str, Any]) -> Path:
    d = office["d"]
    d.approve(office["policy"])
    r = d.run(office["policy"], office["input"], office["out"])
    assert r.exit_code == 0, r.output
    b = Path(json.loads(r.stdout)["bundle"])
    code, res = d.check(b)
    assert code == 0, failed(res)
    return b


# ------------------------------------------------------------------------------------------- run time


def test_named_pipe_policy_is_read_once(office: dict[str, Any]) -> None:
    """A pipe serving the approved text first and a filter-free text after: only the first is ever read."""
    d, pol = office["d"], office["policy"]
    d.approve(pol)
    approved = pol.read_text()
    evil = write_policy(d.root / "evil.yaml", mini_policy()).read_text()
    pol.unlink()
    os.mkfifo(pol)
    served: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        reader_open = False  # after serving a text, wait for that reader to go before serving the next one
        while not stop.is_set():
            try:
                fd = os.open(pol, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader has the pipe open
                reader_open = False
                time.sleep(0.002)
                continue
            if reader_open:
                os.close(fd)
                time.sleep(0.002)
                continue
            os.set_blocking(fd, True)
            text = approved if not served else evil
            with os.fdopen(fd, "w") as f:
                f.write(text)
            served.append(text)
            reader_open = True

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = d.run(pol, office["input"], office["out"])
    finally:
        stop.set()
        t.join(timeout=5)
    assert r.exit_code == 0, r.output
    assert len(served) == 1, f"the policy was read {len(served)} times"
    b = Path(json.loads(r.stdout)["bundle"])
    assert (b / "policy.yaml").read_text() == approved
    rows = pd.read_csv(b / "records.csv")
    assert len(rows) > 0 and "Theft" not in set(rows["category"]), "the steps ran another policy than approved"


def test_no_configuration_means_no_unapproved_run(office: dict[str, Any], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(office["policy"], elsewhere / "mini.yaml")
    old = Path.cwd()
    os.chdir(elsewhere)
    try:
        from click.testing import CliRunner

        from release.cli import main

        r = CliRunner(env={"RELEASE_CONFIG": None}).invoke(
            main, ["run", "mini.yaml", "--input", str(office["input"]), "--out", str(office["out"])])
    finally:
        os.chdir(old)
    assert r.exit_code == 1 and "approval is required by default" in r.output, r.output
    assert published(office["out"]) == []


def test_explicitly_unapproved_bundle_says_so_and_fails_the_gate(office: dict[str, Any]) -> None:
    d = office["d"]
    d.config.write_text(d.config.read_text().replace("required = true", "required = false"))
    r = d.run(office["policy"], office["input"], office["out"])
    assert r.exit_code == 0, r.output
    b = Path(json.loads(r.stdout)["bundle"])
    html = (b / "report.html").read_text()
    assert 'id="not-approved"' in html and html.index('id="not-approved"') < html.index('id="findings"')
    code, res = d.check(b)
    assert code == 1 and "not approved" in failed(res)["approval"][0]
    assert d.check(b, "--allow-unapproved")[0] == 0


@pytest.fixture
def geo_office(tmp_path: Path, demo: dict[str, Any]) -> dict[str, Any]:
    """A deployment whose release.toml names copies of the demo network, addresses and area layer."""
    files = tmp_path / "files"
    shutil.copytree(demo["work"] / "network", files)
    d = Deployment(tmp_path / "geo", files={"network": files / "nodes.csv", "addresses": files / "addresses.csv"},
                   layers={"neighbourhoods": files / "neighbourhoods.geojson"})
    pol = d.root / "crime-indicators.yaml"
    shutil.copy(POLICIES / "crime-indicators.yaml", pol)
    records = next((demo["work"]).glob("crimes-*.parquet"))
    return {"d": d, "policy": pol, "input": records, "out": tmp_path / "publish", "files": files}


def test_approval_lists_every_referenced_file(geo_office: dict[str, Any]) -> None:
    r = geo_office["d"].approve(geo_office["policy"])
    for name in ("policy", "network", "addresses", "neighbourhoods"):
        assert f" {name} " in r.output, r.output


@pytest.mark.parametrize("which", ["nodes.csv", "addresses.csv", "neighbourhoods.geojson"])
def test_referenced_file_edited_after_approval_is_refused(geo_office: dict[str, Any], which: str) -> None:
    d = geo_office["d"]
    d.approve(geo_office["policy"])
    with open(geo_office["files"] / which, "a") as f:
        f.write("\n")
    r = d.run(geo_office["policy"], geo_office["input"], geo_office["out"])
    assert r.exit_code == 1 and "differs from the approved file" in r.output, r.output
    assert published(geo_office["out"]) == []


def test_command_line_override_is_refused(geo_office: dict[str, Any], tmp_path: Path) -> None:
    d = geo_office["d"]
    d.approve(geo_office["policy"])
    other = tmp_path / "other-nodes.csv"
    nodes = pd.read_csv(geo_office["files"] / "nodes.csv")
    nodes.iloc[:-1].to_csv(other, index=False)
    r = d.run(geo_office["policy"], geo_office["input"], geo_office["out"], "--network", str(other))
    assert r.exit_code == 1 and "network 'network' differs from the approved file" in r.output, r.output
    assert published(geo_office["out"]) == []


def test_portable_bundle_checks_elsewhere_and_fails_with_an_altered_file(geo_office: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    """Acceptance 2: bundle, network and layer moved to another tree (originals removed)."""
    d = geo_office["d"]
    d.approve(geo_office["policy"])
    r = d.run(geo_office["policy"], geo_office["input"], geo_office["out"])
    assert r.exit_code == 0, r.output
    b = Path(json.loads(r.stdout)["bundle"])
    for p in b.iterdir():
        assert str(tmp_path) not in p.read_text(errors="ignore"), f"{p.name} holds an absolute path"
    far = tmp_path / "elsewhere"
    shutil.copytree(geo_office["out"], far / "publish")
    shutil.copytree(geo_office["files"], far / "gis")
    shutil.copytree(d.root / "keys", far / "keys")
    shutil.rmtree(geo_office["out"])
    shutil.rmtree(geo_office["files"])
    (far / "release.toml").write_text('[approval]\nkeyring = "keys/approvers.json"\n[signing]\n'
                                      'keyring = "keys/release-keyring.json"\n')
    args = ["check-all", str(far / "publish"), "--config", str(far / "release.toml"), "--network",
            str(far / "gis" / "nodes.csv"), "--addresses", str(far / "gis" / "addresses.csv"),
            "--layer", f"neighbourhoods={far / 'gis' / 'neighbourhoods.geojson'}"]
    r = d.cli(*args)
    assert r.exit_code == 0, r.output
    # The same through release.toml [files] instead of options.
    (far / "release.toml").write_text((far / "release.toml").read_text() +
                                      '[files]\nnetwork = "gis/nodes.csv"\naddresses = "gis/addresses.csv"\n'
                                      '[files.layers]\nneighbourhoods = "gis/neighbourhoods.geojson"\n')
    assert d.cli("check-all", str(far / "publish"), "--config", str(far / "release.toml")).exit_code == 0
    with open(far / "gis" / "neighbourhoods.geojson", "a") as f:
        f.write(" ")
    r = d.cli(*args)
    assert r.exit_code == 1 and "neighbourhoods" in r.output, r.output


def test_check_all_fails_on_anything_that_is_not_a_verified_bundle(bundle: Path, office: dict[str, Any]) -> None:
    d, out = office["d"], office["out"]
    assert d.cli("check-all", str(out)).exit_code == 0
    (out / "notes.txt").write_text("x")
    r = d.cli("check-all", str(out))
    assert r.exit_code == 1 and "notes.txt: a file outside any bundle" in r.output
    (out / "notes.txt").unlink()
    (out / bundle.parent.name / ".staging-x").mkdir()
    r = d.cli("check-all", str(out))
    assert r.exit_code == 1 and "staging" in r.output


def test_internal_diagnostics_go_to_the_configured_folder(bundle: Path, office: dict[str, Any]) -> None:
    assert not any(p.name.startswith(".") for p in office["out"].rglob("*"))
    assert list((office["d"].root / "internal").rglob(f"{bundle.name}.report.html"))


# ------------------------------------------------------------------------- bundles and their signature


def test_test_mode_bundle_is_never_trusted_outside_test_mode(bundle: Path, office: dict[str, Any]) -> None:
    r = office["d"].cli("check", str(bundle), "--json", env={"RELEASE_TEST_MODE": "0"})
    res = json.loads(r.stdout)
    assert r.exit_code == 1 and "test release" in failed(res)["signature"][0]
    assert {f["check"] for f in res["findings"] if f["status"] == "skipped"} >= {"hash", "content"}


def test_production_bundle_is_signed_by_the_release_key_and_passes(office: dict[str, Any]) -> None:
    d = office["d"]
    d.approve(office["policy"])
    r = d.run(office["policy"], office["input"], office["out"], env={"RELEASE_TEST_MODE": "0"})
    assert r.exit_code == 0, r.output
    b = Path(json.loads(r.stdout)["bundle"])
    sig = json.loads((b / "manifest.sig").read_text())
    assert sig["payloadType"].endswith("mode=production")
    r = d.cli("check", str(b), "--json", env={"RELEASE_TEST_MODE": "0"})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["trust"] == "trusted"
    # Without the verifier's release keyring: integrity only, which is not a pass.
    (d.root / "bare.toml").write_text('[approval]\nkeyring = "keys/approvers.json"\n')
    r = d.cli("check", str(b), "--config", str(d.root / "bare.toml"), env={"RELEASE_TEST_MODE": "0"})
    assert r.exit_code == 1 and "integrity only" in r.output


def _append(name: str) -> Any:
    def change(b: Path) -> None:
        with open(b / name, "ab") as f:
            f.write(b"\n")
    return change


@pytest.mark.parametrize("name", ["records.csv", "records.parquet", "report.json", "report.html", "policy.yaml",
                                  "datapackage.json", "manifest.json"])
def test_any_change_resigned_by_an_untrusted_key_fails_the_signature(bundle: Path, tmp_path: Path,
                                                                     name: str) -> None:
    rogue = Ed25519PrivateKey.generate()
    change = (lambda b: None) if name == "manifest.json" else _append(name)
    forged = forge(bundle, tmp_path / "f", change, key=rogue, test=False)
    if name == "manifest.json":
        man = json.loads((forged / "manifest.json").read_text())
        man["approver"] = "Chief of Police"
        (forged / "manifest.json").write_text(json.dumps(man))
        sign_with(forged, rogue, False)
    code, res = _dep_of(bundle).check(forged)
    assert code == 1 and "not in the trusted release keyring" in failed(res)["signature"][0]
    assert "content" in {f["check"] for f in res["findings"] if f["status"] == "skipped"}


def _dep_of(bundle: Path) -> Deployment:
    d = Deployment.__new__(Deployment)
    d.root = bundle.parent.parent.parent / "office"
    d.config = d.root / "release.toml"
    return d


def _edit_parquet(b: Path, fn: Any) -> None:
    t = pd.read_parquet(b / "records.parquet", dtype_backend="numpy_nullable")
    t = fn(t)
    table = pa.Table.from_pandas(t, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, b / "records.parquet", compression="zstd")


INSIDER = {
    "parquet only": (lambda b: _edit_parquet(b, lambda t: t.assign(division="D99")), "formats"),
    "added column": (lambda b: _add_column(b), "columns"),
    "added listed file": (lambda b: (b / "extra.csv").write_text("a\n1\n"), "file-set"),
    "flipped test_mode": (lambda b: _edit_json(b / "manifest.json", lambda m: m.update(test_mode=False)),
                          "consistency"),
    "report.json says pass with no findings": (lambda b: _edit_json(
        b / "report.json", lambda r: [o.update(findings=[], figures={}) for o in r["outputs"]]), "report-json"),
    "a phone number in report.html": (lambda b: (b / "report.html").write_text(
        (b / "report.html").read_text().replace("</main>", "<p>call 416-555-0199</p></main>")),
        "report-html-regenerated"),
    "another approver": (lambda b: _edit_json(b / "manifest.json", lambda m: m.update(approver="Chief of Police")),
                         "consistency"),
}


def _edit_json(p: Path, fn: Any) -> None:
    doc = json.loads(p.read_text())
    fn(doc)
    p.write_text(json.dumps(doc, indent=2))


def _add_column(b: Path) -> None:
    """victim_name added to every format consistently, datapackage regenerated: only the policy says no."""
    t = pd.read_parquet(b / "records.parquet", dtype_backend="numpy_nullable")
    t["victim_name"] = "Jane Doe"
    (b / "records.csv").write_bytes(table_to_csv(t))
    table = pa.Table.from_pandas(t, preserve_index=False).replace_schema_metadata(None)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    (b / "records.parquet").write_bytes(buf.getvalue())


@pytest.mark.parametrize("attack", sorted(INSIDER))
def test_insider_with_the_release_key_is_still_caught(bundle: Path, tmp_path: Path, attack: str) -> None:
    change, check = INSIDER[attack]
    forged = forge(bundle, tmp_path / "f", change)
    code, res = _dep_of(bundle).check(forged)
    assert code == 1, attack
    assert check in failed(res), (attack, failed(res))
    assert not [f for f in res["findings"] if f["status"] == "skipped"], "the insider's signature is valid"


def test_geojson_only_change_is_caught(tmp_path: Path, geo_office: dict[str, Any]) -> None:
    d = geo_office["d"]
    d.approve(geo_office["policy"])
    r = d.run(geo_office["policy"], geo_office["input"], geo_office["out"])
    b = Path(json.loads(r.stdout)["bundle"])

    def move_point(x: Path) -> None:
        doc = json.loads((x / "occurrences.geojson").read_text())
        doc["features"][0]["properties"]["mci_category"] = "Robbery" if doc["features"][0]["properties"].get(
            "mci_category") != "Robbery" else "Assault"
        (x / "occurrences.geojson").write_text(json.dumps(doc))

    forged = forge(b, tmp_path / "f", move_point)
    code, res = d.check(forged)
    assert code == 1 and any("occurrences.geojson" in m for m in failed(res).get("formats", [])), failed(res)
    assert table_to_geojson  # the writer the check re-runs


@pytest.mark.parametrize("attack", ["hidden file", "symlink", "folder"])
def test_hidden_linked_or_nested_files_fail_the_layout(bundle: Path, tmp_path: Path, attack: str) -> None:
    target = tmp_path / "f" / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    if attack == "hidden file":
        (target / ".notes").write_text("x")
    elif attack == "symlink":
        (target / "records.csv").unlink()
        (target / "records.csv").symlink_to(bundle / "records.csv")
    else:
        (target / "extra").mkdir()
    code, res = _dep_of(bundle).check(target)
    assert code == 1 and "layout" in failed(res)


@pytest.mark.parametrize("doc", [[1, 2], {"release_id": "x"}, "not json"])
def test_hostile_manifest_is_a_finding_not_a_crash(bundle: Path, tmp_path: Path, doc: Any) -> None:
    target = tmp_path / "f" / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    (target / "manifest.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    sign_with(target, __import__("release.governance.keys", fromlist=["test_key"]).test_key(), True)
    code, res = _dep_of(bundle).check(target)
    assert code == 1 and "manifest" in failed(res)


def test_approval_record_without_key_id_is_a_finding(bundle: Path, tmp_path: Path) -> None:
    def drop_keyid(b: Path) -> None:
        _edit_json(b / "manifest.json", lambda m: m["approval"]["envelope"]["signatures"][0].pop("keyid"))

    forged = forge(bundle, tmp_path / "f", drop_keyid)
    code, res = _dep_of(bundle).check(forged)
    assert code == 1 and "keyid" in failed(res)["approval"][0]


def test_self_signed_approval_in_a_bundle_is_not_trusted(bundle: Path, tmp_path: Path,
                                                         office: dict[str, Any]) -> None:
    """The bundle's approval re-signed by the insider's own approver key: the verifier's keyring decides."""
    d = office["d"]
    r = d.cli("keygen", "--out", "rogue.pem")
    assert r.exit_code == 0
    rogue_doc = tmp_path / "rogue.approval.json"
    r = d.cli("policy", "approve", str(office["policy"]), "--key", "rogue.pem", "--by", "Dana Reyes", "--out",
              str(rogue_doc))
    assert r.exit_code == 0, r.output
    env = json.loads(rogue_doc.read_text())
    forged = forge(bundle, tmp_path / "f", lambda b: _edit_json(
        b / "manifest.json", lambda m: m["approval"].update(envelope=env)))
    code, res = d.check(forged)
    assert code == 1 and "not in the trusted keyring" in failed(res)["approval"][0]
    # And a verifier with no approver keyring cannot call any approval trusted.
    (d.root / "nokeys.toml").write_text("[signing]\n")
    r = d.cli("check", str(bundle), "--config", str(d.root / "nokeys.toml"), "--json")
    assert r.exit_code == 1 and "no approver keyring" in failed(json.loads(r.stdout))["approval"][0]


def test_legacy_unsigned_bundle_fails_unless_allowed(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "f" / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    (target / "manifest.sig").unlink()
    rehash(target)
    code, res = _dep_of(bundle).check(target)
    assert code == 1 and "unsigned (legacy)" in failed(res)["signature"][0]
    code, res = _dep_of(bundle).check(target, "--allow-legacy")
    assert code == 0 and res["trust"] == "legacy", failed(res)


def test_production_run_without_a_release_key_publishes_nothing(office: dict[str, Any]) -> None:
    d = office["d"]
    d.approve(office["policy"])
    d.config.write_text(d.config.read_text().replace('key = "keys/release.pem"\n', ""))
    r = d.run(office["policy"], office["input"], office["out"], env={"RELEASE_TEST_MODE": "0"})
    assert r.exit_code == 2 and "no release key to sign the bundle with" in r.output, r.output
    assert published(office["out"]) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["manifest.json", "report.json", "policy.yaml", "datapackage.json", "records.csv"]),
       pos=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=8), resign=st.booleans())
def test_any_corrupted_bundle_file_is_a_finding_never_a_crash(bundle: Path, tmp_path_factory: Any, name: str,
                                                             pos: int, junk: bytes, resign: bool) -> None:
    target = tmp_path_factory.mktemp("fuzz") / bundle.parent.name / bundle.name
    shutil.copytree(bundle, target)
    before = (target / name).read_bytes()
    data = bytearray(before)
    i = pos % len(data)
    data[i:i + len(junk)] = junk
    (target / name).write_bytes(bytes(data))
    if resign:
        if name != "manifest.json":
            rehash(target)
        sign_with(target, test_key(), True)
    code, res = _dep_of(bundle).check(target)
    assert code in (0, 1)
    if code == 0:
        # Only the release key's holder can make a change pass, and only in the run-only parts of the
        # manifest (validation counts, step evidence, ledger figures), which the signature alone covers.
        assert resign and (name == "manifest.json" or (target / name).read_bytes() == before), failed(res)
