"""`release check`: re-verify a written bundle from its files alone, never trusting report.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release import registry
from release.context import AssessContext, Finding
from release.errors import UsageError
from release.io.bundle import read_json, read_published_csv, sha256_bytes
from release.plan import compile_plan
from release.policy.loader import parse_policy


@dataclass
class CheckResult:
    bundle: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "ok": self.ok, "findings": [f.to_json() for f in self.findings]}


def _hash_findings(bundle: Path, manifest: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        return [Finding("manifest", False, "manifest.json lists no files", file="manifest.json")]
    for rel, want in sorted(listed.items()):
        p = bundle / rel
        if not p.is_file():
            out.append(Finding("hash", False, f"{rel}: listed in the manifest but missing", file=rel))
            continue
        got = sha256_bytes(p.read_bytes())
        if got != want:
            out.append(Finding("hash", False, f"{rel}: sha256 differs from the manifest (file changed after release)",
                               file=rel))
    present = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    for rel in sorted(present - set(listed) - {"manifest.json"}):
        out.append(Finding("hash", False, f"{rel}: file not listed in the manifest", file=rel))
    if not out:
        out.append(Finding("hash", True, f"all {len(listed)} files match their manifest sha256"))
    return out


def check_bundle(bundle: str | Path, options: dict[str, Any] | None = None) -> CheckResult:
    """Verify hashes, then recompute every figure from the published files and compare with the policy."""
    b = Path(bundle)
    options = dict(options or {})
    if not (b / "manifest.json").is_file():
        raise UsageError(f"{b}: not a bundle (no manifest.json)")
    result = CheckResult(bundle=b)
    try:
        manifest = read_json(b / "manifest.json")
    except ValueError:
        result.findings.append(Finding("manifest", False, "manifest.json is not valid JSON", file="manifest.json"))
        return result
    result.findings.extend(_hash_findings(b, manifest))
    policy_file = b / "policy.yaml"
    if not policy_file.is_file():
        result.findings.append(Finding("policy", False, "policy.yaml missing from the bundle", file="policy.yaml"))
        return result
    if manifest.get("policy_sha256") != sha256_bytes(policy_file.read_bytes()):
        result.findings.append(Finding("policy", False, "policy.yaml does not match the policy_sha256 of the manifest",
                                       file="policy.yaml"))
    policy = parse_policy(policy_file.read_text(encoding="utf-8"), str(policy_file))
    plan = compile_plan(policy)
    schema = plan.final_schema
    try:
        dp = read_json(b / "datapackage.json")
        resources = dp["resources"]
    except (OSError, ValueError, KeyError):
        result.findings.append(Finding("datapackage", False, "datapackage.json missing or unreadable",
                                       file="datapackage.json"))
        return result
    from release.engine import assess_output, direct_identifier_findings

    for out in policy.outputs:
        stems = {r["path"].removesuffix(".csv"): r["path"] for r in resources if r.get("output") == out.name}
        if not stems:
            result.findings.append(Finding("output", False, f"no published file for output {out.name}", output=out.name))
            continue
        tables = {}
        for stem, rel in stems.items():
            try:
                tables[stem] = read_published_csv(b / rel, schema)
            except (OSError, ValueError) as e:
                result.findings.append(Finding("output", False, f"{rel}: unreadable ({e})", output=out.name, file=rel))
        if len(tables) != len(stems):
            continue
        actx = AssessContext(policy=policy, output_name=out.name, files=stems, bundle_dir=b, manifest=manifest,
                             options=options)
        assess_output(out, tables, actx)
        for stem, t in tables.items():
            actx.findings.extend(direct_identifier_findings(policy, out.name, list(t.columns), stems[stem], schema))
        result.findings.extend(actx.findings)
    for fn in registry.BUNDLE_CHECKS:
        result.findings.extend(fn(policy, b, manifest, options))
    return result
