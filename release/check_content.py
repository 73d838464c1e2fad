"""The content stage of `release check`: what the published files prove, even against the release key's holder.

A valid signature says who published a bundle, not that it is right. From the verified bytes
alone this stage proves: the file set is the one the policy implies; Parquet and GeoJSON hold
exactly the rows and columns of the CSV (the CSV differs only by neutralised formula cells);
the columns are the ones the outputs declare; every figure computable from the published files
equals report.json's; datapackage.json and report.html regenerate byte for byte; the manifest
and report.json agree on what the run was (test mode, approval, release).
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from release.context import Finding
from release.io.bundle import canonical_json, table_to_csv, table_to_geojson

FIXED_FILES = ("policy.yaml", "datapackage.json", "report.json", "report.html")


def content_findings(b: Path, options: dict[str, Any], state: dict[str, Any]) -> list[Finding]:
    from release.check import assess_published

    policy, plan, manifest, data = state["policy"], state["plan"], state["manifest"], state["data"]
    schema = plan.final_schema
    out: list[Finding] = []
    out += _file_set(policy, schema, data)
    frames = _formats(policy, schema, data, out)
    out += _columns(policy, schema, data)
    report = _report_json(data, out)
    assessed, figures = assess_published(b, policy, schema, manifest, data, options)
    out += assessed
    if report is not None:
        out += _figures_match(policy, report, figures, assessed)
        out += _consistency(manifest, report, state)
        out += _report_html(report, manifest, data, options, policy)
    out += _datapackage(policy, schema, data, frames)
    return out


def _file_set(policy: Any, schema: Any, data: dict[str, bytes]) -> list[Finding]:
    want = set(FIXED_FILES)
    for o in policy.outputs:
        for stem in o.published_stems(schema):
            want |= {f"{stem}.csv", f"{stem}.parquet"}
            if o.geo_columns(schema):
                want.add(f"{stem}.geojson")
    got = set(data)
    extra, missing = sorted(got - want), sorted(want - got)
    if extra or missing:
        msg = "; ".join(x for x in (f"not implied by the policy: {extra}" if extra else "",
                                    f"implied by the policy but missing: {missing}" if missing else "") if x)
        return [Finding("file-set", False, f"the bundle's files differ from those its policy publishes ({msg})")]
    return [Finding("file-set", True, f"the {len(want)} files are exactly those the policy's outputs and the bundle"
                                      " format imply")]


def _formats(policy: Any, schema: Any, data: dict[str, bytes], out: list[Finding]) -> dict[str, pd.DataFrame]:
    """Parquet → the CSV writer must give the CSV's bytes; and the GeoJSON writer the GeoJSON's bytes."""
    frames: dict[str, pd.DataFrame] = {}
    for o in policy.outputs:
        geo = o.geo_columns(schema)
        for stem in o.published_stems(schema):
            pq, csv, gj = f"{stem}.parquet", f"{stem}.csv", f"{stem}.geojson"
            if pq not in data or csv not in data:
                continue
            try:
                # Nullable types, as the engine's frames hold them (an integer column with gaps stays integer).
                frame = pd.read_parquet(io.BytesIO(data[pq]), dtype_backend="numpy_nullable")
            except (OSError, ValueError) as e:
                out.append(Finding("formats", False, f"{pq}: unreadable ({type(e).__name__})", output=o.name, file=pq))
                continue
            frames[stem] = frame
            same = table_to_csv(frame) == data[csv]
            out.append(Finding("formats", same, f"{pq} holds exactly the rows and columns of {csv}" if same else
                               f"{pq} and {csv} differ (rows, columns or values)", output=o.name, file=pq))
            if geo and gj in data:
                try:
                    same = table_to_geojson(frame, *geo) == data[gj]
                except (KeyError, ValueError, TypeError):
                    same = False
                out.append(Finding("formats", same, f"{gj} holds exactly the points and properties of {pq}" if same
                                   else f"{gj} differs from {pq} (points, rows or properties)", output=o.name, file=gj))
    return frames


def _columns(policy: Any, schema: Any, data: dict[str, bytes]) -> list[Finding]:
    out = []
    for o in policy.outputs:
        for stem in o.published_stems(schema):
            rel = f"{stem}.csv"
            if rel not in data:
                continue
            header = data[rel].split(b"\n", 1)[0].decode("utf-8", errors="replace")
            cols = next(csv.reader(io.StringIO(header)), [])
            want = list(o.stem_columns(stem, schema))
            ok = set(cols) == set(want) and len(cols) == len(want)
            out.append(Finding("columns", ok, f"{rel} publishes exactly the declared columns" if ok else
                               f"{rel} publishes columns {sorted(set(cols) - set(want))} not declared by output"
                               f" {o.name} (or lacks {sorted(set(want) - set(cols))})", output=o.name, file=rel))
    return out


def _report_json(data: dict[str, bytes], out: list[Finding]) -> dict[str, Any] | None:
    try:
        report = json.loads(data["report.json"])
        if not isinstance(report, dict) or not isinstance(report.get("outputs"), list):
            raise ValueError
    except (KeyError, ValueError):
        out.append(Finding("report-json", False, "report.json missing or not a report", file="report.json"))
        return None
    if canonical_json(report) != data["report.json"]:
        out.append(Finding("report-json", False, "report.json is not in the form the engine writes (edited after"
                           " the run)", file="report.json"))
    return report


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except (TypeError, ValueError):
            return False
        return (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _json_roundtrip(x: Any) -> Any:
    return json.loads(canonical_json(x))


def _figures_match(policy: Any, report: dict[str, Any], figures: dict[str, dict[str, Any]],
                   assessed: list[Finding]) -> list[Finding]:
    """Every figure the check recomputes must be report.json's; every finding it makes must be there too."""
    out = []
    if report.get("verdict") != "pass":
        out.append(Finding("report-json", False, f"report.json gives the verdict {report.get('verdict')!r} for a"
                                                 " published bundle", file="report.json"))
    by_name = {o.get("name"): o for o in report["outputs"] if isinstance(o, dict)}
    for o in policy.outputs:
        rep = by_name.get(o.name)
        if rep is None:
            out.append(Finding("report-json", False, f"report.json has no section for output {o.name}",
                               output=o.name, file="report.json"))
            continue
        mine = _json_roundtrip(figures.get(o.name, {}))
        theirs = rep.get("figures") if isinstance(rep.get("figures"), dict) else {}
        diff = [k for k in mine if k not in theirs or not _subset_equal(mine[k], theirs[k])]
        ok = not diff
        out.append(Finding("report-json", ok, f"report.json's figures of {o.name} equal those recomputed from the"
                           " published files" if ok else f"report.json's figures {diff} of {o.name} differ from those"
                           " recomputed from the published files", output=o.name, file="report.json"))
        stated = {(f.get("check"), f.get("file"), bool(f.get("ok"))) for f in rep.get("findings") or []
                  if isinstance(f, dict)}
        missing = sorted({f.check for f in assessed if f.output == o.name and f.check in _RUN_FINDINGS
                          and (f.check, f.file, f.ok) not in stated})
        if missing:
            out.append(Finding("report-json", False, f"report.json does not state the findings {missing} of"
                               f" {o.name} as recomputed", output=o.name, file="report.json"))
    return out


_RUN_FINDINGS = {"k-anonymity", "l-diversity", "direct-identifiers", "identifier-scan", "table-threshold",
                 "table-audit", "table-additivity", "dp-keys", "dp-margins"}
"Findings made from the published files both by the run and by the check: report.json must state each."


def _subset_equal(mine: Any, theirs: Any) -> bool:
    """The check's value equals the report's; run-only keys the check cannot compute are left to the signature."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return all(k in theirs and _subset_equal(v, theirs[k]) for k, v in mine.items())
    return _equal(mine, theirs)


def _consistency(manifest: dict[str, Any], report: dict[str, Any], state: dict[str, Any]) -> list[Finding]:
    from release.engine import report_approval

    problems = []
    for k in ("release_id", "dataset", "created_utc"):
        if manifest.get(k) != report.get(k):
            problems.append(f"{k} differs between manifest.json and report.json")
    modes = {"manifest.test_mode": bool(manifest.get("test_mode")), "report.test_mode": bool(report.get("test_mode")),
             "manifest.features.test_mode": bool((manifest.get("features") or {}).get("test_mode"))}
    if state.get("signed_test") is not None:  # a legacy bundle has no signature to state a mode
        modes |= {"signature": bool(state["signed_test"]),
                  "manifest.signing.mode": (manifest.get("signing") or {}).get("mode") == "test"}
    if len(set(modes.values())) != 1:
        problems.append("test mode is not stated the same way everywhere (" +
                        ", ".join(f"{k}={v}" for k, v in modes.items()) + ")")
    appr = manifest.get("approval") if isinstance(manifest.get("approval"), dict) else {}
    if report_approval(appr) != report.get("approval"):
        problems.append("the approval in report.json differs from the manifest's")
    if manifest.get("approver") != appr.get("approver"):
        problems.append("the manifest's approver differs from its approval record")
    if problems:
        return [Finding("consistency", False, "; ".join(problems), file="manifest.json")]
    return [Finding("consistency", True, "manifest.json, manifest.sig and report.json agree on the release, its"
                                         " mode and its approval", file="manifest.json")]


def _report_html(report: dict[str, Any], manifest: dict[str, Any], data: dict[str, bytes], options: dict[str, Any],
                 policy: Any) -> list[Finding]:
    """report.html must be exactly what the engine renders from report.json and the published files."""
    from release.engine import versions
    from release.report.html import build_page
    from release.report.render import area_layer

    made = manifest.get("versions") or {}
    mine = versions()
    if any(made.get(k) != mine.get(k) for k in ("release-engine", "matplotlib", "jinja2")):
        return [Finding("report-html-regenerated", False, "report.html cannot be regenerated to compare: the bundle"
                        f" was made with {_v(made)}, this checker runs {_v(mine)}; check with the engine version that"
                        " made it", file="report.html")]
    from release.report.render import map_layer_name

    areas = area_layer(options, policy, manifest.get("subjects"))
    need = map_layer_name(policy)
    if need is not None and areas is None and any(
            isinstance(s, dict) and s.get("name") == need for s in manifest.get("subjects") or []):
        return [Finding("report-html-regenerated", False, f"report.html draws the area layer {need!r}: give the same"
                        f" file (by sha256) with --layer {need}=FILE or release.toml [files.layers] to compare it",
                        file="report.html")]
    shown = {p: b for p, b in sorted(data.items()) if p != "report.html"}
    try:
        page = build_page(report, shown, areas=areas, approval=report.get("approval"), versions=made).encode("utf-8")
    except Exception as e:  # noqa: BLE001 - a hostile report.json must give a finding, not a crash
        return [Finding("report-html-regenerated", False, f"report.json cannot be rendered ({type(e).__name__})",
                        file="report.html")]
    ok = page == data.get("report.html")
    return [Finding("report-html-regenerated", ok, "report.html is exactly the page report.json and the published"
                    " files render to" if ok else "report.html differs from the page report.json and the published"
                    " files render to (edited after the run)", file="report.html")]


def _v(v: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v.get(k)}" for k in ("release-engine", "matplotlib", "jinja2"))


def _datapackage(policy: Any, schema: Any, data: dict[str, bytes], frames: dict[str, pd.DataFrame]) -> list[Finding]:
    from release.engine import datapackage, resource_of

    try:
        resources = [resource_of(o.name, stem, data, schema) for o in policy.outputs for stem in o.published_stems(schema)]
        want = canonical_json(datapackage(policy, resources))
    except (KeyError, ValueError, OSError) as e:
        return [Finding("datapackage", False, f"datapackage.json cannot be regenerated ({type(e).__name__})",
                        file="datapackage.json")]
    out = []
    same = want == data.get("datapackage.json")
    out.append(Finding("datapackage", same, "datapackage.json equals the one regenerated from the published files"
                       if same else "datapackage.json differs from the one regenerated from the published files",
                       file="datapackage.json"))
    out.append(_frictionless_valid(data))
    return out


def _frictionless_valid(data: dict[str, bytes]) -> Finding:
    """frictionless-py validates the package (descriptor and data) from a private copy of the verified bytes."""
    from frictionless import Package

    with tempfile.TemporaryDirectory(prefix="release-check-") as d:
        for rel, b in data.items():
            if rel == "datapackage.json" or rel.endswith(".csv"):
                (Path(d) / rel).write_bytes(b)
        try:
            rep = Package(str(Path(d) / "datapackage.json")).validate()
            errors = rep.flatten(["type", "note"])
        except Exception as e:  # noqa: BLE001 - frictionless raises its own exception types for bad descriptors
            errors = [[type(e).__name__, str(e)[:200]]]
    if errors:
        return Finding("datapackage-valid", False, f"frictionless finds {len(errors)} error(s) in datapackage.json,"
                       f" first: {errors[0][0]}", file="datapackage.json")
    return Finding("datapackage-valid", True, "datapackage.json and its CSV files are valid for frictionless-py",
                   file="datapackage.json")
