"""Batch invariance: every bundled policy publishes the same bytes whether its input runs as one batch or as many in scrambled order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from release.demo import _columns_of, demo_inputs
from release.engine import run_release
from release.policy.loader import load_policy
from tests.conftest import POLICIES, internal_dir
from tests.system.report_demo import DEMO_RECORDS

NOISY_KINDS = ("dp-table", "indices")
"Outputs whose published values carry OpenDP noise (which cannot be seeded) or are computed from it."
VOLATILE = ("seconds", "search_seconds", "release_id", "created_utc", "budget", "ledger")


def _scrub(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _scrub(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_scrub(v) for v in x]
    return x


def _deterministic(bundle: Path) -> dict[str, Any]:
    """The parts of a bundle fixed by the input, the policy and the test run key (not the DP noise)."""
    report = json.loads((bundle / "report.json").read_text())
    noisy = {o["name"] for o in report["outputs"] if o["kind"] in NOISY_KINDS}
    noisy_files = {f for o in report["outputs"] if o["name"] in noisy for f in o["files"]}
    files = {p.name: p.read_bytes() for p in sorted(bundle.iterdir())
             if p.suffix in (".csv", ".parquet", ".geojson") and p.name not in noisy_files}
    internal = json.loads((internal_dir(bundle) / f"{bundle.name}.json").read_text())
    return {
        "files": files,
        "steps": _scrub(report["steps"]),
        "validation": report["validation"],
        "outputs": [_scrub(o) for o in report["outputs"] if o["name"] not in noisy],
        # DP outputs: which rows contribution bounding kept is keyed per row, so it must not move either.
        "bounding": {k: v.get("bounding") for k, v in (internal.get("outputs") or {}).items() if k in noisy},
    }


def _policies() -> list[Path]:
    return sorted(POLICIES.glob("*.yaml"))


@pytest.fixture(scope="module")
def inputs(demo: dict[str, Any]) -> dict[str, Any]:
    # The demo run's synthetic inputs (already written): the same records every bundled policy reads.
    return demo_inputs(demo["work"], DEMO_RECORDS, lambda _m: None)


def _demo_input(policy: Any, inputs: dict[str, Any]) -> str:
    """The demo input (its kind) whose Parquet file has exactly the policy's columns; skip when none has."""
    kind = next((k for k, p in inputs["inputs"].items()
                 if Path(p).suffix == ".parquet" and _columns_of(p) == set(policy.input.columns)), None)
    if kind is None:
        pytest.skip("no demo input has this policy's columns")
    return kind


@pytest.mark.parametrize("policy_path", _policies(), ids=lambda p: p.stem)
def test_one_batch_and_scrambled_small_batches_publish_the_same_bytes(policy_path: Path, inputs: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    policy = load_policy(policy_path)
    kind = _demo_input(policy, inputs)
    now = datetime.now(UTC).replace(microsecond=0)
    got = []
    for name, extra in (("whole", {"batch_rows": 10**9}),
                        ("scrambled", {"batch_rows": 1000, "_shuffle_batches": True})):
        opts = {**inputs["options"], "ledger": str(tmp_path / f"{name}.sqlite"), **extra}
        res = run_release(policy_path, inputs["inputs"][kind], tmp_path / name, options=opts, seed=7, now=now)
        assert res.bundle is not None
        got.append(_deterministic(res.bundle))
    whole, scrambled = got
    assert whole["files"] or any(whole["bounding"].values()), "nothing deterministic was compared"
    assert whole["files"].keys() == scrambled["files"].keys()
    for f in whole["files"]:
        assert whole["files"][f] == scrambled["files"][f], f"{f} differs between one batch and scrambled batches"
    for k in ("steps", "validation", "outputs", "bounding"):
        assert whole[k] == scrambled[k], k


def test_a_csv_input_streams_in_batches_with_the_same_bytes(inputs: dict[str, Any], tmp_path: Path) -> None:
    """CSV inputs are read as a stream (record ids first, then the pipeline): any batch size, the same bundle."""
    import pandas as pd

    policy_path = POLICIES / "crime-indicators.yaml"
    csv = tmp_path / "crimes.csv"
    pd.read_parquet(inputs["inputs"]["crimes"]).to_csv(csv, index=False)
    now = datetime.now(UTC).replace(microsecond=0)
    got = []
    for name, rows in (("whole", 10**9), ("small", 1000)):
        opts = {**inputs["options"], "ledger": str(tmp_path / f"{name}.sqlite"), "batch_rows": rows}
        res = run_release(policy_path, csv, tmp_path / name, options=opts, seed=7, now=now)
        assert res.bundle is not None
        got.append(_deterministic(res.bundle))
    assert got[0]["files"] and got[0] == got[1]
    # The validation report counts every input row, whichever batch it was in.
    assert got[0]["validation"]["rows_read"] == len(pd.read_csv(csv, usecols=[0]))
