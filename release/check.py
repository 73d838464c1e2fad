"""`release check`: verify a bundle in stages, from its bytes, never trusting report.json or the bundle's own keys.

Stages, in order (python-tuf style; a failed stage marks the stages that depend on it as skipped):
  layout      only regular, visible files; no link, no folder
  signature   manifest.sig over manifest.json's exact bytes, by a key of the verifier's release keyring
  manifest    manifest.json parses and lists files
  hash        every listed file has its sha256; nothing unlisted
  policy      policy.yaml is the one the manifest names, and parses
  approval    the signed approval in the manifest verifies with the verifier's approver keyring and covers
              this policy and the referenced files the manifest names
  content     file set implied by the policy; every format equals the CSV; columns as declared;
              every figure recomputed from the published files (and equal to report.json's);
              datapackage.json and report.html regenerated and equal; manifest and report agree
"""

from __future__ import annotations

import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release import registry
from release.context import AssessContext, Finding
from release.errors import ReleaseError, UsageError
from release.io.bundle import read_published_csv, sha256_bytes

FIXED_FILES = ("policy.yaml", "datapackage.json", "report.json", "report.html")
SIGNATURE = "manifest.sig"


@dataclass
class CheckResult:
    bundle: Path
    findings: list[Finding] = field(default_factory=list)
    trust: str = "untrusted"
    "trusted (signature by a trusted release key) | test (test-mode key) | integrity-only | legacy | untrusted"

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings) and bool(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "ok": self.ok, "trust": self.trust,
                "findings": [f.to_json() for f in self.findings]}


class _Stop(Exception):
    """An earlier stage failed: the stages after it are reported as skipped."""


STAGES = ("layout", "signature", "manifest", "hash", "policy", "approval", "content")


def check_bundle(bundle: str | Path, options: dict[str, Any] | None = None) -> CheckResult:
    """Verify BUNDLE in stages; every problem is a finding (exit 1), never an exception."""
    from release.governance.config import file_options

    b = Path(bundle)
    if not b.is_dir() or not (b / "manifest.json").exists():
        raise UsageError(f"{b}: not a bundle (no manifest.json)")
    options = file_options(dict(options or {}))
    result = CheckResult(bundle=b)
    state: dict[str, Any] = {}
    done: list[str] = []
    for stage in STAGES:
        try:
            _STAGE_FNS[stage](b, options, result, state)
            done.append(stage)
        except _Stop:
            done.append(stage)
            break
        except ReleaseError as e:
            result.findings.append(Finding(stage, False, e.message, file=None))
            done.append(stage)
            break
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OSError) as e:
            # A hostile file the stage could not even read is a failed check (exit 1), never a crash.
            result.findings.append(Finding(stage, False, f"the bundle could not be verified at this stage"
                                           f" ({type(e).__name__}): treat it as tampered"))
            done.append(stage)
            break
    for stage in STAGES[len(done):]:
        result.findings.append(Finding(stage, False, f"skipped: an earlier stage failed ({done[-1]})", skipped=True))
    return result


def _fail(result: CheckResult, check: str, message: str, file: str | None = None, stop: bool = True) -> None:
    result.findings.append(Finding(check, False, message, file=file))
    if stop:
        raise _Stop


# --------------------------------------------------------------------------------------------- stages


def _stage_layout(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    problems = []
    names = []
    for entry in sorted(os.scandir(b), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{entry.name}: a symbolic link (a bundle holds only regular files)")
        elif stat.S_ISDIR(st.st_mode):
            problems.append(f"{entry.name}/: a folder (a bundle is flat)")
        elif not stat.S_ISREG(st.st_mode):
            problems.append(f"{entry.name}: not a regular file")
        elif entry.name.startswith("."):
            problems.append(f"{entry.name}: a hidden file")
        else:
            names.append(entry.name)
    if problems:
        _fail(result, "layout", "; ".join(problems[:10]))
    state["names"] = names
    result.findings.append(Finding("layout", True, f"{len(names)} regular files, no link, folder or hidden file"))


def _read(b: Path, name: str) -> bytes:
    # O_NOFOLLOW: a link swapped in after the layout stage is refused, not followed.
    fd = os.open(b / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _stage_signature(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    from release.governance.signing import verify_manifest

    state["manifest_bytes"] = _read(b, "manifest.json")
    sig = _read(b, SIGNATURE) if SIGNATURE in state["names"] else None
    res = verify_manifest(state["manifest_bytes"], sig, options)
    state["signed_test"] = None if res.status == "legacy" else res.test
    if res.status == "pass":
        result.trust = "test" if res.test else "trusted"
        result.findings.append(Finding("signature", True, res.message, file=SIGNATURE))
    elif res.status == "legacy":
        result.trust = "legacy"
        if not options.get("allow_legacy"):
            _fail(result, "signature", res.message, file="manifest.json")
        result.findings.append(Finding("signature", True, "unsigned (legacy) bundle, checked because --allow-legacy"
                                       " was given: its content is verified, its origin is not",
                                       file="manifest.json"))
    elif res.status == "integrity-only":
        # Go on, so the operator sees whether the content holds; the result is still not a pass.
        result.trust = "integrity-only"
        _fail(result, "signature", res.message, file=SIGNATURE, stop=False)
    else:
        _fail(result, "signature", res.message, file=SIGNATURE)


def _stage_manifest(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    try:
        m = json.loads(state["manifest_bytes"])
    except ValueError:
        _fail(result, "manifest", "manifest.json is not valid JSON", file="manifest.json")
    files = m.get("files") if isinstance(m, dict) else None
    if (not isinstance(m, dict) or not isinstance(files, dict) or not files
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
            or not isinstance(m.get("release_id"), str) or not isinstance(m.get("dataset"), str)):
        _fail(result, "manifest", "manifest.json is not a manifest (an object with release_id, dataset and files"
                                  " mapping names to sha256)", file="manifest.json")
    state["manifest"] = m
    result.findings.append(Finding("manifest", True, f"manifest.json lists {len(files)} files", file="manifest.json"))


def _stage_hash(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    listed: dict[str, str] = state["manifest"]["files"]
    data: dict[str, bytes] = {}
    problems = []
    for rel, want in sorted(listed.items()):
        if "/" in rel or rel.startswith(".") or rel in ("manifest.json", SIGNATURE):
            problems.append(f"{rel}: not a name a bundle may list")
            continue
        if rel not in state["names"]:
            problems.append(f"{rel}: listed in the manifest but missing")
            continue
        data[rel] = _read(b, rel)
        if sha256_bytes(data[rel]) != want:
            problems.append(f"{rel}: sha256 differs from the manifest (file changed after release)")
    for rel in sorted(set(state["names"]) - set(listed) - {"manifest.json", SIGNATURE}):
        problems.append(f"{rel}: file not listed in the manifest")
    if problems:
        for p in problems:
            result.findings.append(Finding("hash", False, p, file=p.split(":")[0]))
        raise _Stop
    state["data"] = data
    result.findings.append(Finding("hash", True, f"all {len(listed)} files match their manifest sha256"))


def _stage_policy(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    from release.plan import compile_plan
    from release.policy.loader import parse_policy

    data = state["data"]
    if "policy.yaml" not in data:
        _fail(result, "policy", "policy.yaml missing from the bundle", file="policy.yaml")
    if state["manifest"].get("policy_sha256") != sha256_bytes(data["policy.yaml"]):
        _fail(result, "policy", "policy.yaml does not match the policy_sha256 of the manifest", file="policy.yaml")
    try:
        text = data["policy.yaml"].decode("utf-8-sig")
        policy = parse_policy(text, "policy.yaml")
        plan = compile_plan(policy)
    except (ReleaseError, UnicodeDecodeError) as e:
        _fail(result, "policy", f"policy.yaml does not load: {getattr(e, 'message', type(e).__name__)}",
              file="policy.yaml")
    state["policy"], state["plan"] = policy, plan
    result.findings.append(Finding("policy", True, "policy.yaml is the manifest's and loads", file="policy.yaml"))


def _stage_approval(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    from release.governance.gate import approval_finding

    result.findings.append(approval_finding(state["manifest"], state["data"]["policy.yaml"], options))


def _stage_content(b: Path, options: dict[str, Any], result: CheckResult, state: dict[str, Any]) -> None:
    from release.check_content import content_findings

    result.findings.extend(content_findings(b, options, state))


_STAGE_FNS = {"layout": _stage_layout, "signature": _stage_signature, "manifest": _stage_manifest,
              "hash": _stage_hash, "policy": _stage_policy, "approval": _stage_approval, "content": _stage_content}


def assess_published(b: Path, policy: Any, schema: Any, manifest: dict[str, Any], data: dict[str, bytes],
                     options: dict[str, Any]) -> tuple[list[Finding], dict[str, dict[str, Any]]]:
    """Every figure recomputed from the published CSVs: (findings, figures per output)."""
    from release.engine import assess_output, direct_identifier_findings

    findings: list[Finding] = []
    figures: dict[str, dict[str, Any]] = {}
    for out in policy.outputs:
        stems = {s: f"{s}.csv" for s in out.published_stems(schema)}
        tables = {}
        for stem, rel in stems.items():
            try:
                tables[stem] = read_published_csv(io.BytesIO(data[rel]), schema)  # type: ignore[arg-type]
            except (KeyError, ValueError, UnicodeDecodeError) as e:
                findings.append(Finding("output", False, f"{rel}: missing or unreadable ({type(e).__name__})",
                                        output=out.name, file=rel))
        if len(tables) != len(stems):
            continue
        actx = AssessContext(policy=policy, output_name=out.name, files=stems, bundle_dir=b, manifest=manifest,
                             options={**options, "_published": data})
        try:
            figures[out.name] = assess_output(out, tables, actx)
        except ReleaseError as e:
            actx.finding("output", False, f"cannot be assessed: {e.message}")
        for stem, t in tables.items():
            actx.findings.extend(direct_identifier_findings(policy, out.name, list(t.columns), stems[stem], schema))
        findings.extend(actx.findings)
    for fn in registry.BUNDLE_CHECKS:
        findings.extend(fn(policy, b, manifest, options))
    return findings, figures
