"""Acceptance 1: the bundled benchmarking policy runs in the demo; `release check` recomputes every index and interval."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from release.check import check_bundle
from release.io.bundle import table_to_csv, table_to_parquet
from tests.system.report_demo import copy_bundle, internal_of, rehash

pytestmark = pytest.mark.usefixtures("demo_config")
OUTPUTS = ("force-indices", "strip-search-indices")


def _bundle(demo: dict[str, Any]) -> Path:
    b = demo["bundles"].get("enforcement-benchmarking")
    assert b is not None, demo["rows"]
    return b


def test_demo_publishes_indices_and_check_recomputes_them(demo: dict[str, Any]) -> None:
    b = _bundle(demo)
    res = check_bundle(b)
    assert res.ok, [f.message for f in res.findings if not f.ok]
    recomputed = [f for f in res.findings if f.check == "indices-recomputed"]
    assert {f.output for f in recomputed} == set(OUTPUTS) and all(f.ok for f in recomputed)
    html = (b / "report.html").read_text()
    for name in OUTPUTS:
        t = pd.read_csv(b / f"{name}.csv", keep_default_na=False, na_values=[""])
        assert list(t.columns) == ["group", "benchmark", "measure", "index", "lower", "upper", "method", "flag"]
        assert set(t["benchmark"]) == {"residents", "enforcement-actions"}
        assert (b / f"{name}.parquet").is_file() and (b / f"{name}_benchmarks.csv").is_file()
        assert f'id="output-{name}"' in html and "Benchmarking indices" in html
        # An unbounded interval is flagged and never given a number.
        open_ = t["upper"].isna()
        assert (t.loc[open_, "flag"].fillna("") != "").all()
        bounded = ~open_ & t["index"].notna()
        assert ((t.loc[bounded, "lower"] <= t.loc[bounded, "index"] + 1e-9)
                & (t.loc[bounded, "index"] <= t.loc[bounded, "upper"] + 1e-9)).all()
    methods = set(pd.read_csv(b / "force-indices.csv")["method"]) | set(pd.read_csv(b / "strip-search-indices.csv")["method"])
    assert "dp-simulation" in methods and "lp-bounds" in methods
    # The internal report puts the index on the unprotected records beside each published one.
    true = internal_of(b)["outputs"]["force-indices"]["true_indices"]
    assert len(true) == len(pd.read_csv(b / "force-indices.csv")) and all("true_index" in r for r in true)


def test_an_edited_interval_fails_the_check(demo: dict[str, Any], tmp_path: Path) -> None:
    b = copy_bundle(_bundle(demo), tmp_path)
    t = pd.read_csv(b / "force-indices.csv", dtype=str, keep_default_na=False, na_values=[""])
    t = t.astype("string")
    t.loc[0, "upper"] = str(float(t.loc[0, "upper"]) * 0.5)  # a narrower interval than the protection allows
    frame = pd.read_csv(io.BytesIO(table_to_csv(t)))
    (b / "force-indices.csv").write_bytes(table_to_csv(t))
    (b / "force-indices.parquet").write_bytes(table_to_parquet(frame))
    rehash(b)
    res = check_bundle(b)
    bad = [f for f in res.findings if f.check == "indices-recomputed" and not f.ok]
    assert not res.ok and bad and bad[0].output == "force-indices"
