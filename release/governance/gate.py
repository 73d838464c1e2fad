"""Gate output for machines: JUnit XML, GitHub annotations, and the bundle check of the recorded approval."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from release.context import Finding
from release.errors import ReleaseError
from release.governance.approval import (
    ApprovalProblem,
    compare_subjects,
    policy_content_sha256,
    verify_envelope,
)
from release.governance.config import load_config
from release.governance.keys import Keyring
from release.textsafe import safe_text

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: Any) -> str:
    """Text safe for XML 1.0: characters it cannot hold become U+FFFD (a message must never break the report)."""
    return _XML_INVALID.sub("\ufffd", str(text))


def _case_name(f: Finding) -> str:
    where = " ".join(x for x in (f.output, f.file) if x)
    return f"[{f.check}] {where}" if where else f"[{f.check}]"


def junit_xml(results: Sequence[tuple[str, Sequence[Finding]]]) -> bytes:
    """One <testsuite> per bundle, one <testcase> per finding; a failed finding is a <failure>."""
    root = ET.Element("testsuites", name="release check")
    total = failures = 0
    for bundle, findings in results:
        suite = ET.SubElement(root, "testsuite", name=_x(bundle), tests=str(len(findings)),
                              failures=str(sum(not f.ok and not f.skipped for f in findings)), errors="0",
                              skipped=str(sum(f.skipped for f in findings)))
        seen: dict[str, int] = {}
        for f in findings:
            name = _case_name(f)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                # CI tools merge test cases of the same name; keep every finding visible.
                name = f"{name} #{seen[name]}"
            case = ET.SubElement(suite, "testcase", classname=_x(f"{Path(str(bundle)).name}.{f.output or 'bundle'}"),
                                 name=_x(name))
            if f.skipped:
                ET.SubElement(case, "skipped", message=_x(f.message))
            elif not f.ok:
                fail = ET.SubElement(case, "failure", message=_x(f.message), type=_x(f.check))
                detail = [f"bundle: {bundle}", f"check: {f.check}", f"message: {f.message}"]
                detail += [f"{k}: {getattr(f, k)}" for k in ("output", "file", "figure", "threshold")
                           if getattr(f, k) is not None]
                fail.text = _x("\n".join(detail))
            else:
                ET.SubElement(case, "system-out").text = _x(f.message)
        total += len(findings)
        failures += sum(not f.ok and not f.skipped for f in findings)
    root.set("tests", str(total))
    root.set("failures", str(failures))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _escape_data(s: str) -> str:
    # Escape sequences and control characters go first (safe_text); the runner's own escapes then
    # keep '%', CR and LF from ending the command, so data can never start a workflow command.
    s = "\n".join(safe_text(line) for line in s.splitlines())
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(bundle: str | Path, findings: Iterable[Finding]) -> list[str]:
    """GitHub Actions workflow commands: an ::error line per failed finding, pointing at the bundle file."""
    lines = []
    for f in findings:
        if f.ok or f.skipped:
            continue
        path = Path(bundle) / f.file if f.file else Path(bundle) / "manifest.json"
        title = f"release check: {f.check}" + (f" ({f.output})" if f.output else "")
        lines.append(f"::error file={_escape_prop(str(path))},title={_escape_prop(title)}::{_escape_data(f.message)}")
    return lines


def approval_finding(manifest: dict[str, Any], policy_bytes: bytes, options: dict[str, Any]) -> Finding:
    """The approval the manifest records, verified with the verifier's approver keyring (never the bundle's keys).

    It must be a valid signature by a trusted approver over a statement whose subjects are this
    bundle's policy and the referenced files the manifest names. A release made with approval
    turned off fails unless the verifier allows unapproved bundles.
    """
    rec = manifest.get("approval")
    if not isinstance(rec, dict) or not rec.get("required"):
        if options.get("allow_unapproved"):
            return Finding("approval", True, "not approved (the deployment turned approval off); accepted because"
                           " --allow-unapproved was given", file="manifest.json")
        return Finding("approval", False, "not approved: the release was made with approval turned off"
                       " (`[approval] required = false`); pass --allow-unapproved to accept it", file="manifest.json")
    cfg = load_config(options).approval
    if cfg.keyring is None:
        return Finding("approval", False, "the approval cannot be trusted: no approver keyring is configured for"
                       " the verifier ([approval] keyring in release.toml); integrity only", file="manifest.json")
    try:
        statement, key_name = verify_envelope(rec.get("envelope"), Keyring.load(cfg.keyring, "approver"),
                                              "manifest.json approval")
    except ApprovalProblem as e:
        return Finding("approval", False, str(e), file="manifest.json")
    except ReleaseError as e:
        return Finding("approval", False, e.message, file="manifest.json")
    actual = [{"name": "policy", "kind": "policy", "sha256": policy_content_sha256(policy_bytes)}]
    actual += [{"name": str(s.get("name")), "kind": str(s.get("kind")), "sha256": str(s.get("sha256"))}
               for s in manifest.get("subjects") or [] if isinstance(s, dict)]
    diff = compare_subjects(statement["subjects"], actual, statement["approver"], str(statement.get("signed_utc")))
    if diff:
        return Finding("approval", False, "the approval does not cover this bundle: " + "; ".join(diff),
                       file="policy.yaml")
    if statement["approver"] != rec.get("approver"):
        return Finding("approval", False, f"the manifest names approver {rec.get('approver')!r} but the signed"
                       f" approval is by {statement['approver']!r}", file="manifest.json")
    return Finding("approval", True, f"approved by {statement['approver']} (key {rec.get('key_id')}, {key_name},"
                   f" {statement.get('signed_utc')}): the signature covers this policy and the"
                   f" {len(actual) - 1} referenced file(s)", file="policy.yaml")


def find_bundles(folder: Path) -> list[Path]:
    """Every bundle (a folder holding manifest.json) under `folder`, skipping hidden and staging folders."""
    if (folder / "manifest.json").is_file():
        return [folder]
    out = []
    for m in sorted(folder.rglob("manifest.json")):
        rel = m.parent.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        out.append(m.parent)
    return out


def check_folder(folder: Path, options: dict[str, Any]) -> tuple[list[Any], list[Finding]]:
    """Check every bundle of a publication folder (FOLDER/<dataset>/<release-id>/); anything else is a finding.

    A publication folder holds bundles and nothing else: a stray file, a hidden or staging folder, a
    link or a folder without a manifest would be published beside the verified bundles unchecked.
    """
    from release.check import check_bundle
    from release.errors import UsageError

    if (folder / "manifest.json").exists():
        return [check_bundle(folder, options)], []
    strays: list[Finding] = []
    bundles: list[Path] = []

    def stray(p: Path, why: str) -> None:
        strays.append(Finding("publication-folder", False, f"{p.relative_to(folder)}: {why}; a publication folder"
                              " holds only verified bundles", file=str(p.relative_to(folder))))

    for d in sorted(folder.iterdir()):
        if d.is_symlink() or not d.is_dir():
            stray(d, "a link" if d.is_symlink() else "a file outside any bundle")
            continue
        if d.name.startswith("."):
            stray(d, "a hidden or staging folder (an interrupted run leaves .staging-*: remove it)")
            continue
        for r in sorted(d.iterdir()):
            if r.is_symlink() or not r.is_dir():
                stray(r, "a link" if r.is_symlink() else "a file outside any bundle")
            elif r.name.startswith("."):
                stray(r, "a hidden or staging folder (an interrupted run leaves .staging-*: remove it)")
            elif not (r / "manifest.json").is_file():
                stray(r, "a folder that is not a bundle (no manifest.json)")
            else:
                bundles.append(r)
    results = []
    for bnd in bundles:
        try:
            results.append(check_bundle(bnd, options))
        except UsageError as e:
            stray(bnd, e.message)
    if not bundles and not strays:
        strays.append(Finding("publication-folder", False, "no bundle found: nothing was verified"))
    return results, strays


def write_gate_outputs(results: Sequence[tuple[str, Sequence[Finding]]], junit: str | None, github: bool,
                       echo: Any) -> None:
    """--junit FILE and --github for `release check` and `release check-all`."""
    if junit:
        p = Path(junit)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(junit_xml(results))
    if github:
        for bundle, findings in results:
            for line in github_annotations(bundle, findings):
                echo(line)
