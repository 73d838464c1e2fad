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

from tests.system.report_demo import demo_run, internal_of

DELIMS = re.compile(r'[,"\n\r:{}\[\]<>=;|\t]')
VALUE_KEYS = ("true", "true_value", "value", "count", "true_count")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = demo_run(tmp_path_factory)
    if not run["bundles"]:
        pytest.fail(f"the demo produced no bundle: {run['rows']}")
    return run


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
        assert values, dataset
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


def _suppressed_truths(internal: Any, columns: list[str]) -> list[dict[str, Any]]:
    """Suppressed cells with their true values wherever the internal record lists them as dicts."""
    found: list[dict[str, Any]] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            keys = [c for c in columns if c in x]
            val = next((x[k] for k in VALUE_KEYS if isinstance(x.get(k), (int, float))), None)
            if keys and val is not None:
                found.append({"keys": {c: str(x[c]) for c in keys}, "value": val})
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(internal)
    return found


def test_suppressed_cells_never_shown(demo: dict[str, Any]) -> None:
    tables = 0
    for dataset, bundle in demo["bundles"].items():
        rep = json.loads((bundle / "report.json").read_text())
        html = (bundle / "report.html").read_text()
        internal = internal_of(bundle)
        for out in rep["outputs"]:
            if out["kind"] != "table":
                continue
            tables += 1
            for rel in (f for f in out["files"] if f.endswith(".csv")):
                t = pd.read_csv(bundle / rel, dtype=str, keep_default_na=False, na_values=[""])
                par = pq.read_table(bundle / rel.replace(".csv", ".parquet")).to_pandas()
                keys = [c for c in t.columns if t[c].notna().all()]
                sec = html[html.index(f'id="output-{out["name"]}"'):]
                sec = sec[:sec.index("</section>")]
                rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", r)]
                        for r in re.findall(r"<tr>(.*?)</tr>", sec, re.S)]
                for i, c in [(i, col) for col in t.columns for i in t.index[t[col].isna()]]:
                    assert pd.isna(par.loc[i, c]), f"{dataset}/{rel}: Parquet shows a cell the CSV suppresses"
                    key = [str(t.loc[i, k]) for k in keys]
                    shown = [r for r in rows if r[:len(key)] == key]
                    for r in shown:
                        assert r[t.columns.get_loc(c)] == "suppressed", (dataset, rel, key, r)
                for cell in _suppressed_truths(internal.get("outputs", {}).get(out["name"], {}), list(t.columns)):
                    m = pd.Series(True, index=t.index)
                    for k, v in cell["keys"].items():
                        m &= t[k].astype(str) == v
                    for i in t.index[m]:
                        vals = {str(t.loc[i, c]) for c in t.columns if c not in cell["keys"]}
                        assert str(cell["value"]) not in vals or t.loc[i].isna().any(), (dataset, cell)
    if not tables:
        pytest.skip("no demo bundle has a suppressed `table` output yet (use-of-force-by-gender policy absent)")


def test_internal_diagnostics_stay_internal(demo: dict[str, Any]) -> None:
    """Keys of the internal record (true totals, errors, mappings) never appear in report.json or report.html."""
    checked = 0
    for dataset, bundle in demo["bundles"].items():
        internal = internal_of(bundle)
        public_json = (bundle / "report.json").read_text()
        html = (bundle / "report.html").read_text()
        for name, d in (internal.get("outputs") or {}).items():
            # Scalar diagnostics (true totals, errors against the truth); nested ones may share a public name.
            for k in [k for k, v in d.items() if not isinstance(v, (dict, list))] if isinstance(d, dict) else []:
                checked += 1
                assert f'"{k}"' not in public_json, (dataset, name, k)
                assert k.replace("_", " ") not in html, (dataset, name, k)
        assert "INTERNAL REPORT" not in html
        internal_html = bundle.parent.parent / ".internal" / dataset / f"{bundle.name}.report.html"
        assert internal_html.is_file() and "INTERNAL REPORT" in internal_html.read_text()
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
            assert f"[{v - acc:,.1f}, {v + acc:,.1f}]" in html, (dataset, rel)
