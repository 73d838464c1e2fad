"""Acceptance: no public file of a demo bundle reveals a suppressed value, a record's identity or internal figures."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tests.system.report_demo import internal_folder, internal_of

DELIMS = re.compile(r'[,"\n\r:{}\[\]<>=;|\t]')


def public_text(bundle: Path) -> str:
    """Every public file of the bundle as text (Parquet read back to CSV, so its values are scanned too)."""
    parts = []
    for p in sorted(bundle.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            parts.append(pq.read_table(p).to_pandas().to_csv(index=False))
        else:
            parts.append(p.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def input_of(demo: dict[str, Any], bundle: Path) -> pd.DataFrame:
    declared = set(yaml.safe_load((bundle / "policy.yaml").read_text())["input"]["columns"])
    for p in sorted(demo["work"].glob("*.parquet")):
        if set(pq.read_schema(p).names) == declared:
            return pd.read_parquet(p)
    from release.demo import _columns_of, _published_tables
    from release.io.readers import read_table

    for p in _published_tables().values():  # the real published table the demo also protects
        if _columns_of(p) == declared:
            return read_table(p)
    raise AssertionError(f"no demo input matches {bundle}")


def identifying_values(bundle: Path, frame: pd.DataFrame) -> set[str]:
    """Values of the columns that identify a person or record (string-typed, long enough to be specific)."""
    cols = yaml.safe_load((bundle / "policy.yaml").read_text())["input"]["columns"]
    roles = {"direct-identifier", "record-id", "privacy-unit"}
    out: set[str] = set()
    for c, spec in cols.items():
        if spec.get("role") in roles and spec.get("type") == "string" and c in frame:
            out |= {v for v in frame[c].dropna().astype(str) if len(v) >= 6}
    return out


def test_no_record_identity_in_any_public_file(demo: dict[str, Any]) -> None:
    checked = 0
    for dataset, bundle in demo["bundles"].items():
        text = public_text(bundle)
        tokens = {t.strip() for t in DELIMS.split(text)}
        values = identifying_values(bundle, input_of(demo, bundle))
        if not values:
            continue  # an already aggregated input (the published TPS table) identifies no one
        leaked = sorted(v for v in values if v in tokens or (DELIMS.search(v) and v in text))
        assert not leaked, f"{dataset}: {len(leaked)} identifying value(s) published, e.g. {leaked[:3]}"
        checked += len(values)
    assert checked > 1000


def test_suppressed_records_are_not_published(demo: dict[str, Any]) -> None:
    """Records the k-anonymity step suppressed stay out: published rows = read - excluded - suppressed."""
    seen = False
    for dataset, bundle in demo["bundles"].items():
        rep = json.loads((bundle / "report.json").read_text())
        supp = [s for s in rep["steps"] if "suppressed_records" in s]
        if not supp or len(rep["outputs"]) != 1 or rep["outputs"][0]["kind"] != "records":
            continue
        seen = True
        removed = sum(int(s.get("rows_excluded") or 0) for s in rep["steps"]) + sum(
            int(s["suppressed_records"]) for s in supp if s.get("suppression", "records").startswith("records"))
        expected = rep["validation"]["rows_read"] - rep["validation"]["rows_excluded"] - removed
        out = rep["outputs"][0]
        csv = bundle / next(f for f in out["files"] if f.endswith(".csv"))
        assert len(pd.read_csv(csv)) == expected, dataset
        assert f"{expected:,}" in (bundle / "report.html").read_text()
    if not seen:
        pytest.skip("no demo bundle suppresses records (k-anonymity policy absent)")


def released_frame(demo: dict[str, Any], bundle: Path) -> tuple[Any, pd.DataFrame]:
    """The records as the run saw them before its outputs: the input, validated, through the policy's steps."""
    from datetime import UTC, datetime

    from release.context import StepContext
    from release.plan import compile_plan
    from release.policy.loader import load_policy
    from release.validate import validate_records

    policy = load_policy(bundle / "policy.yaml")
    plan = compile_plan(policy)
    now = datetime.now(UTC)
    frame, _ = validate_records(input_of(demo, bundle), policy, now, "demo input")
    ctx = StepContext(policy=policy, policy_path=bundle / "policy.yaml", schema=plan.schemas[0], release_id="truth",
                      now=now, seed=1)
    for i, step in enumerate(policy.steps):
        frame, _ = step.apply(frame, ctx)
        ctx.schema = plan.schemas[i + 1]
    return policy, frame


def test_suppressed_cells_never_shown(demo: dict[str, Any]) -> None:
    """For every suppressed cell, its true count is absent from every public place that cell appears."""
    checked = nonzero = 0
    for dataset, bundle in demo["bundles"].items():
        rep = json.loads((bundle / "report.json").read_text())
        if not any(o["kind"] == "table" for o in rep["outputs"]):
            continue
        policy, frame = released_frame(demo, bundle)
        html = (bundle / "report.html").read_text()
        for out in rep["outputs"]:
            if out["kind"] != "table":
                continue
            cfg = policy.output(out["name"])
            if getattr(cfg, "value_column", None) is not None:
                continue  # magnitude tables: truths are sums, checked by the tables' own tests
            total = getattr(cfg, "total_label", "Total")
            sec = html[html.index(f'id="output-{out["name"]}"'):]
            sec = sec[:sec.index("</section>")]
            html_rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", r)]
                         for r in re.findall(r"<tr>(.*?)</tr>", sec, re.S)]
            audit = {json.dumps(a["cell"], sort_keys=True): a for a in out["figures"]["suppression"].get("audit", [])}
            for rel in (f for f in out["files"] if f.endswith(".csv")):
                t = pd.read_csv(bundle / rel, dtype=str, keep_default_na=False, na_values=[""])
                par = pq.read_table(bundle / rel.replace(".csv", ".parquet")).to_pandas()
                measure = next(c for c in t.columns if c in ("count", "value", "n")) if \
                    any(c in t.columns for c in ("count", "value", "n")) else t.columns[-2]
                dims = [c for c in t.columns if c in frame.columns]
                for i in t.index[t[measure].isna()]:
                    keys = {d: str(t.loc[i, d]) for d in dims}
                    m = pd.Series(True, index=frame.index)
                    for d, v in keys.items():
                        if v != total:
                            m &= frame[d].astype(str) == v
                    truth = int(m.sum())
                    checked += 1
                    nonzero += truth > 0
                    assert pd.isna(par.loc[i, measure]), f"{dataset}/{rel}: Parquet reveals suppressed cell {keys}"
                    row = [r for r in html_rows if r[:len(dims)] == [keys[d] for d in dims]
                           and len(r) == len(t.columns)]
                    # A table over 50 rows is summarized with a link to its file (issue 17): the cells it leaves
                    # out are not shown at all; every cell it does show must say "suppressed".
                    assert row or f'<a href="{rel}">' in sec, \
                        f"{dataset}/{rel}: suppressed cell {keys} missing from report.html"
                    for r in row:
                        assert r[t.columns.get_loc(measure)] == "suppressed" and str(truth) not in r[len(dims):len(dims) + 1]
                    a = next((a for k, a in audit.items() if all(a["cell"].get(d) == v for d, v in keys.items())), None)
                    if a is not None:
                        assert not (a["lower"] == a["upper"] == truth), f"{dataset}: audit discloses {keys}"
    if not checked:
        pytest.skip("no demo bundle has a suppressed count `table` output")
    assert nonzero, "every suppressed cell had a true value of 0: the scan proves nothing"


def test_internal_diagnostics_stay_internal(demo: dict[str, Any]) -> None:
    """Keys of the internal record (true totals, errors, mappings) never appear in report.json or report.html."""
    checked = 0
    for dataset, bundle in demo["bundles"].items():
        internal = internal_of(bundle)
        internal_keys: list[str] = []
        public_json = (bundle / "report.json").read_text()
        html = (bundle / "report.html").read_text()
        for name, d in (internal.get("outputs") or {}).items():
            # Scalar diagnostics (true totals, errors against the truth); nested ones may share a public name.
            for k in [k for k, v in d.items() if not isinstance(v, (dict, list))] if isinstance(d, dict) else []:
                checked += 1
                assert f'"{k}"' not in public_json, (dataset, name, k)
                assert k.replace("_", " ") not in html, (dataset, name, k)
                internal_keys.append(k)
        assert "INTERNAL REPORT" not in html
        internal_html = internal_folder(bundle) / f"{bundle.name}.report.html"
        assert not (bundle.parent.parent / ".internal").exists(), "internal diagnostics inside the publication folder"
        text = internal_html.read_text()
        assert "INTERNAL REPORT" in text
        # ... while the internal report, outside the bundle, does show them.
        for k in internal_keys:
            assert k.replace("_", " ") in text, (dataset, k)
        internal_keys.clear()
    assert checked, "no internal diagnostics were recorded by any demo release"


def test_report_json_mirrors_parsed_html_numbers(demo: dict[str, Any]) -> None:
    """The public page shows only figures report.json holds or the published files give (spot check: DP cells)."""
    for dataset, bundle in demo["bundles"].items():
        rep = json.loads((bundle / "report.json").read_text())
        for out in rep["outputs"]:
            if out["kind"] != "dp-table":
                continue
            rel = next(f for f in out["files"] if f.endswith(".csv"))
            t = pd.read_csv(io.BytesIO((bundle / rel).read_bytes()))
            html = (bundle / "report.html").read_text()
            acc = out["figures"]["dp"]["accuracy_95"]
            v = float(t.iloc[0][t.columns[-1]])
            lo = max(v - acc, 0.0) if out["figures"]["dp"].get("intervals_truncated_at_zero") else v - acc
            assert f"[{lo:,.1f}, {v + acc:,.1f}]" in html, (dataset, rel)
