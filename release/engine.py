"""Execute a plan: validate, run steps, build outputs, assess them, gate, write the bundle."""

from __future__ import annotations

import platform
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from release import registry
from release.context import AssessContext, Finding, OutputBuild, StepContext, test_mode
from release.errors import BlockedError, UsageError
from release.io.bundle import (
    canonical_json,
    read_published_csv,
    sha256_bytes,
    table_to_csv,
    table_to_geojson,
    table_to_parquet,
    write_bundle,
)
from release.io.readers import file_sha256, read_table
from release.plan import Plan, compile_plan
from release.policy.base import Role, Schema
from release.policy.loader import load_policy
from release.policy.models import Policy
from release.validate import ValidationReport, validate_records

Progress = Callable[[str], None]

DEPENDENCIES = ("opendp", "pandas", "pyarrow", "numpy", "scipy", "pyproj", "shapely", "pydantic", "click",
                "cryptography", "matplotlib")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("release-engine", *DEPENDENCIES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def new_release_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


@dataclass
class RunResult:
    """The outcome of a run: its report and, when it passed, where the bundle is."""

    report: dict[str, Any]
    bundle: Path | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


def _quiet(_: str) -> None:
    return None


def published_files(out: Any, build: OutputBuild) -> dict[str, dict[str, str]]:
    """table stem -> {format: relative path} for one output."""
    files: dict[str, dict[str, str]] = {}
    for stem in build.tables:
        files[stem] = {"csv": f"{stem}.csv", "parquet": f"{stem}.parquet"}
        if build.geo:
            files[stem]["geojson"] = f"{stem}.geojson"
    return files


def assess_output(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """The output's own assessment plus every plug-in assessor of its kind."""
    figures = dict(out.assess(tables, actx))
    for fn in registry.ASSESSORS.get(out.kind, []):
        figures.update(fn(out, tables, actx) or {})
    return figures


def direct_identifier_findings(policy: Policy, output: str, columns: list[str], file: str | None,
                               schema: Schema | None = None) -> list[Finding]:
    ids = set(policy.input.role_columns(Role.direct_identifier))
    if schema is not None:
        # Columns pseudonymized by a step are no longer direct identifiers.
        ids = {c for c in ids if c not in schema or schema[c].role == Role.direct_identifier}
    leaked = sorted(ids & set(columns))
    return [Finding("direct-identifiers", not leaked,
                    "no direct-identifier column published" if not leaked else
                    f"direct-identifier column(s) published: {leaked}", output=output, file=file)]


def run_release(policy_path: str | Path, input_path: str | Path, out_dir: str | Path, *,
                options: dict[str, Any] | None = None, seed: int | None = None,
                progress: Progress = _quiet, now: datetime | None = None) -> RunResult:
    """Run one release. Raises PolicyError/InputError (exit 2) or BlockedError (exit 1)."""
    options = dict(options or {})
    if seed is not None and not test_mode():
        raise UsageError("a seed fixes the noise and the masks: it is refused outside test mode (RELEASE_TEST_MODE=1)")
    policy_path = Path(policy_path)
    input_path = Path(input_path)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    policy = load_policy(policy_path)
    plan = compile_plan(policy)
    for hook in registry.PRE_RUN:
        hook(policy, policy_path, options)
    now = now or datetime.now(UTC)
    release_id = new_release_id(now)
    progress(f"reading {input_path}")
    raw = read_table(input_path, policy.input)
    progress(f"validating {len(raw):,} records against {policy_path.name}")
    frame, vreport = validate_records(raw, policy, now, str(input_path))
    del raw
    ctx = StepContext(policy=policy, policy_path=policy_path, schema=plan.schemas[0], release_id=release_id,
                      now=now, seed=seed, options=options, original=frame)
    for i, step in enumerate(policy.steps):
        ts = time.perf_counter()
        progress(f"step {i + 1}/{len(policy.steps)}: {step.describe()}")
        frame, ev = step.apply(frame, ctx)
        ctx.schema = plan.schemas[i + 1]
        ctx.step_evidence.append({"index": i, "type": step.type, "seconds": round(time.perf_counter() - ts, 3), **ev})
    for hook in registry.PRE_OUTPUT:
        hook(policy, ctx)
    return _finish(policy, policy_path, plan, ctx, frame, vreport, input_path, out_dir, progress, t0)


def _finish(policy: Policy, policy_path: Path, plan: Plan, ctx: StepContext, frame: pd.DataFrame,
            vreport: ValidationReport, input_path: Path, out_dir: Path, progress: Progress,
            t0: float) -> RunResult:
    files: dict[str, bytes] = {}
    outputs_report: list[dict[str, Any]] = []
    findings: list[Finding] = []
    resources: list[dict[str, Any]] = []
    internal: dict[str, Any] = {"outputs": {}}
    staging_tables: dict[str, dict[str, pd.DataFrame]] = {}
    for out in policy.outputs:
        progress(f"output {out.name} ({out.kind})")
        build = out.build(frame, ctx)
        paths = published_files(out, build)
        for stem, table in build.tables.items():
            files[paths[stem]["csv"]] = table_to_csv(table)
            files[paths[stem]["parquet"]] = table_to_parquet(table)
            if build.geo:
                files[paths[stem]["geojson"]] = table_to_geojson(table, *build.geo)
            resources.append(_resource(out.name, stem, table, paths[stem], ctx.schema, files))
        files.update(build.extra_files)
        staging_tables[out.name] = build.tables
        internal["outputs"][out.name] = build.internal
        outputs_report.append({"name": out.name, "kind": out.kind,
                               "files": sorted(p for d in paths.values() for p in d.values()) + sorted(build.extra_files),
                               "evidence": build.evidence})
    progress("assessing the outputs from the published files")
    for out, rep in zip(policy.outputs, outputs_report, strict=True):
        stems = list(staging_tables[out.name])
        # Assess what the public will read: the CSV bytes, parsed back, not the frames in memory.
        tables = {s: read_published_csv_bytes(files[f"{s}.csv"], ctx.schema) for s in stems}
        actx = AssessContext(policy=policy, output_name=out.name, files={s: f"{s}.csv" for s in stems},
                             options=ctx.options, run=ctx)
        rep["figures"] = assess_output(out, tables, actx)
        for s in stems:
            actx.findings.extend(direct_identifier_findings(policy, out.name, list(tables[s].columns),
                                                            f"{s}.csv", ctx.schema))
        rep["findings"] = [f.to_json() for f in actx.findings]
        findings.extend(actx.findings)
    verdict = "pass" if all(f.ok for f in findings) else "blocked"
    report: dict[str, Any] = {
        "dataset": policy.dataset.name,
        "title": policy.dataset.title,
        "release_id": ctx.release_id,
        "created_utc": ctx.now.isoformat(timespec="seconds"),
        "verdict": verdict,
        "findings": [f.to_json() for f in findings],
        "validation": vreport.to_json(),
        "steps": ctx.step_evidence,
        "outputs": outputs_report,
        "gate": plan.gate,
        "budget": ctx.manifest.get("budget"),
        "approval": {k: v for k, v in (ctx.manifest.get("approval") or {"required": False}).items()
                     if k in ("required", "approver", "key_id", "key_name", "signed_utc", "policy_sha256")},
    }
    if verdict == "blocked":
        failed = [f for f in findings if not f.ok]
        err = BlockedError(f"release of {policy.dataset.name} blocked by the gate: {len(failed)} finding(s) failed;"
                           " nothing was published",
                           details=[f"{f.output or '-'}: [{f.check}] {f.message}" for f in failed])
        err.report = report  # type: ignore[attr-defined]
        raise err
    files["policy.yaml"] = policy_path.read_bytes()
    files["datapackage.json"] = canonical_json(_datapackage(policy, resources))
    files["report.json"] = canonical_json(report)
    for render in registry.RENDERERS:
        files.update(render(report, files, ctx))
    manifest = {
        "release_id": ctx.release_id,
        "dataset": policy.dataset.name,
        "created_utc": ctx.now.isoformat(timespec="seconds"),
        "policy_sha256": file_sha256(policy_path),
        "input_sha256": file_sha256(input_path),
        "schema_sha256": schema_sha256(policy),
        "approver": (ctx.manifest.get("approval") or {}).get("approver"),
        "engine": "release-engine",
        "versions": versions(),
        "test_mode": test_mode(),
        "features": _features(ctx),
        "outputs": [_output_manifest(out, rep) for out, rep in zip(policy.outputs, outputs_report, strict=True)],
        **ctx.manifest,
    }
    progress(f"writing bundle ({len(files)} files)")
    bundle = write_bundle(out_dir, policy.dataset.name, ctx.release_id, files, manifest)
    _write_internal(out_dir, policy.dataset.name, ctx, internal)
    for hook in registry.POST_BUNDLE:
        hook(policy, ctx, bundle)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return RunResult(report=report, bundle=bundle, findings=findings)


def schema_sha256(policy: Policy) -> str:
    """Hash of the declared input schema (canonical JSON), so schema drift between releases is visible."""
    import json

    doc = policy.input.model_dump(mode="json", by_alias=True)
    return sha256_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def _features(ctx: StepContext) -> dict[str, Any]:
    approval = ctx.manifest.get("approval") or {}
    return {"opendp": list((ctx.manifest.get("opendp") or {}).get("features") or []),
            "approval_required": bool(approval.get("required")), "test_mode": test_mode(),
            "plugins": list(registry.PLUGINS)}


def _output_manifest(out: Any, rep: dict[str, Any]) -> dict[str, Any]:
    """Per output: its kind, the protection mechanism(s) the report shows, and the DP budget it spends."""
    fig = rep.get("figures") or {}
    mech = []
    if isinstance(fig.get("dp"), dict):
        mech.append(str(fig["dp"].get("mechanism", "differential privacy")))
    if isinstance(fig.get("suppression"), dict):
        mech.append("cell suppression (primary and secondary)")
    if isinstance(fig.get("anonymity"), dict):
        mech.append(f"k-anonymity (k={fig['anonymity'].get('k')})")
    if isinstance(fig.get("location"), dict) and fig["location"].get("method"):
        mech.append(f"geomask {fig['location']['method']}")
    return {"name": out.name, "kind": out.kind, "mechanism": mech or ["record selection and generalization"],
            "budget": out.budget()}


def read_published_csv_bytes(data: bytes, schema: Schema) -> pd.DataFrame:
    import io

    return read_published_csv(io.BytesIO(data), schema)  # type: ignore[arg-type]


def _write_internal(out_dir: Path, dataset: str, ctx: StepContext, internal: dict[str, Any]) -> None:
    """Internal diagnostics go beside the publish folder's bundles, never inside a bundle."""
    internal = {**internal, **ctx.internal}
    if not any(internal.values()):
        return
    d = out_dir / ".internal" / dataset
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{ctx.release_id}.json").write_bytes(canonical_json(internal))


_FIELD_TYPES = {"string": "string", "category": "string", "integer": "integer", "float": "number",
                "boolean": "boolean", "datetime": "datetime", "date": "date"}


def _resource(output: str, stem: str, table: pd.DataFrame, paths: dict[str, str], schema: Schema,
              files: dict[str, bytes]) -> dict[str, Any]:
    fields = []
    for c in table.columns:
        spec = schema.get(c)
        if spec is not None:
            t = _FIELD_TYPES[spec.type.value]
            if spec.type.value in ("datetime", "date") and not pd.api.types.is_datetime64_any_dtype(table[c]):
                t = "string"
        elif pd.api.types.is_integer_dtype(table[c]):
            t = "integer"
        elif pd.api.types.is_float_dtype(table[c]):
            t = "number"
        elif pd.api.types.is_bool_dtype(table[c]):
            t = "boolean"
        else:
            t = "string"
        f: dict[str, Any] = {"name": str(c), "type": t}
        if spec is not None and spec.description:
            f["description"] = spec.description
        fields.append(f)
    csv_path = paths["csv"]
    return {"name": stem.replace("_", "-"), "path": csv_path, "profile": "tabular-data-resource",
            "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
            "hash": "sha256:" + sha256_bytes(files[csv_path]),
            "output": output, "schema": {"fields": fields}}


def _datapackage(policy: Policy, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"profile": "tabular-data-package", "name": policy.dataset.name, "title": policy.dataset.title,
            "description": policy.dataset.description,
            "licenses": [{"name": policy.dataset.license}],
            "sources": [{"title": policy.dataset.publisher}],
            "resources": resources}


def plan_policy(policy_path: str | Path) -> Plan:
    return compile_plan(load_policy(policy_path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `release` command")
