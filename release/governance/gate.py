"""Gate output for machines: JUnit XML, GitHub annotations, and the bundle check of the recorded approval."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from release.context import Finding
from release.governance.approval import (
    PURPOSE,
    ApprovalProblem,
    policy_content_sha256,
    verify_approval,
)
from release.governance.config import load_approval_config
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
                              failures=str(sum(not f.ok for f in findings)), errors="0", skipped="0")
        seen: dict[str, int] = {}
        for f in findings:
            name = _case_name(f)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                # CI tools merge test cases of the same name; keep every finding visible.
                name = f"{name} #{seen[name]}"
            case = ET.SubElement(suite, "testcase", classname=_x(f"{Path(str(bundle)).name}.{f.output or 'bundle'}"),
                                 name=_x(name))
            if not f.ok:
                fail = ET.SubElement(case, "failure", message=_x(f.message), type=_x(f.check))
                detail = [f"bundle: {bundle}", f"check: {f.check}", f"message: {f.message}"]
                detail += [f"{k}: {getattr(f, k)}" for k in ("output", "file", "figure", "threshold")
                           if getattr(f, k) is not None]
                fail.text = _x("\n".join(detail))
            else:
                ET.SubElement(case, "system-out").text = _x(f.message)
        total += len(findings)
        failures += sum(not f.ok for f in findings)
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
        if f.ok:
            continue
        path = Path(bundle) / f.file if f.file else Path(bundle) / "manifest.json"
        title = f"release check: {f.check}" + (f" ({f.output})" if f.output else "")
        lines.append(f"::error file={_escape_prop(str(path))},title={_escape_prop(title)}::{_escape_data(f.message)}")
    return lines


def approval_bundle_check(policy: Any, bundle: Path, manifest: dict[str, Any], options: dict[str, Any]) -> list[Finding]:
    """BUNDLE_CHECKS hook: the manifest's approval must be a valid signature over the bundle's policy.yaml."""
    rec = manifest.get("approval")
    cfg = load_approval_config(options)
    if not isinstance(rec, dict):
        return [Finding("approval", not cfg.required, "the manifest records no approval" +
                        (f" but {cfg.source} requires one" if cfg.required else ""), file="manifest.json")]
    if not rec.get("required"):
        ok = not cfg.required
        return [Finding("approval", ok, "released without a required approval (approval.required was false)" +
                        (f"; {cfg.source} requires one" if not ok else ""), file="manifest.json")]
    keyring = Keyring.load(cfg.keyring) if cfg.keyring is not None else None
    try:
        data = (bundle / "policy.yaml").read_bytes()
        verify_approval({"purpose": PURPOSE, **rec}, data, keyring, "manifest.json approval")
    except ApprovalProblem as e:
        return [Finding("approval", False, str(e), file="policy.yaml")]
    except OSError:
        return [Finding("approval", False, "policy.yaml missing: the approval cannot be verified", file="policy.yaml")]
    trust = f"trusted by {cfg.keyring}" if keyring is not None else "no keyring configured: signature checked, trust not"
    return [Finding("approval", True, f"policy approved by {rec.get('approver')} (key {rec.get('key_id')}, "
                    f"{rec.get('signed_utc')}); signature valid over policy sha256 "
                    f"{policy_content_sha256(data)[:12]}…; {trust}", file="policy.yaml")]


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
