"""dp-table outputs of an all-row-local policy get a frame of just the columns they read (plus each row's
bounding score over every column, taken per batch): the rows kept and the exact counts are the whole frame's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from release.batches import ROW_DIGEST, run_key, to_frame
from release.dp import table as dp_table
from release.dp.bounding import bounding_key
from release.engine import run_release
from release.policy.loader import load_policy
from tests.conftest import POLICIES, internal_dir
from tests.system.test_batch_invariance import inputs  # noqa: F401 - fixture

POLICY = POLICIES / "monthly-crime-counts.yaml"


def _run(inputs: dict[str, Any], tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
         **extra: Any) -> dict[str, Any]:
    """One run; what each dp-table build was handed and kept, and the internal report's exact figures."""
    seen: dict[str, Any] = {}
    build = dp_table.DPTableOutput.build
    bound = dp_table.bound_contributions

    def recording_build(self: Any, frame: pd.DataFrame, ctx: Any) -> Any:
        seen[self.name] = {"columns": list(frame.columns), "frame": frame}
        return build(self, frame, ctx)

    def recording_bound(frame: pd.DataFrame, *a: Any, **k: Any) -> Any:
        keep, stats = bound(frame, *a, **k)
        seen.setdefault("kept", []).append(keep.copy())
        return keep, stats

    monkeypatch.setattr(dp_table.DPTableOutput, "build", recording_build)
    monkeypatch.setattr(dp_table, "bound_contributions", recording_bound)
    now = datetime.now(UTC).replace(microsecond=0)
    opts = {**inputs["options"], "ledger": str(tmp_path / f"{name}.sqlite"), "batch_rows": 250, **extra}
    res = run_release(POLICY, inputs["inputs"]["crimes"], tmp_path / name, options=opts, seed=7, now=now)
    monkeypatch.undo()
    assert res.bundle is not None
    internal = json.loads((internal_dir(res.bundle) / f"{res.bundle.name}.json").read_text())
    # The internal report's figures fixed by the input and the run key (true_total also depends on which
    # neighbourhoods the noisy threshold released: OpenDP's noise cannot be seeded).
    exact = {k: {"bounding": v.get("bounding"),
                 "in_data": {c: d["values_in_data"] for c, d in v.get("discovery", {}).items()}}
             for k, v in internal["outputs"].items()}
    return {"seen": seen, "exact": exact, "bundle": res.bundle}


def test_the_pruned_frame_keeps_the_whole_frames_rows_and_exact_counts(inputs: dict[str, Any],  # noqa: F811
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _run(inputs, tmp_path, "whole", monkeypatch, _frame_in_memory=True)
    pruned = _run(inputs, tmp_path, "pruned", monkeypatch)
    policy = load_policy(POLICY)
    out = policy.outputs[0]
    unit = policy.budget.privacy_unit  # type: ignore[union-attr]
    wf, pf = whole["seen"][out.name]["frame"], pruned["seen"][out.name]["frame"]
    # The same rows in the same order, and the pruned frame's digests are the whole frame's own.
    assert len(wf) == len(pf) > 1000
    assert np.array_equal(pf[ROW_DIGEST].to_numpy(), bounding_key(run_key(7)).row_scores(wf).view(np.uint64))
    for c in (*out.by, unit):
        assert pf[c].equals(wf[c]), c
    # Contribution bounding truncated some units, and kept exactly the same rows both ways.
    assert whole["exact"][out.name]["bounding"]["units_truncated"] > 0
    assert len(whole["seen"]["kept"]) == len(pruned["seen"]["kept"]) == 1
    assert np.array_equal(whole["seen"]["kept"][0], pruned["seen"]["kept"][0])
    assert whole["exact"] == pruned["exact"]
    # The exact counts the DP table noises: kept rows per key combination, the same both ways.
    by = list(out.by)
    counts = [f.loc[k, by].astype(str).value_counts().sort_index()
              for f, k in ((wf, whole["seen"]["kept"][0]), (pf, pruned["seen"]["kept"][0]))]
    assert counts[0].sum() > 1000 and counts[0].equals(counts[1])
    # The digest never reaches a published file.
    for p in pruned["bundle"].iterdir():
        if p.suffix == ".csv":
            assert ROW_DIGEST not in p.read_text().splitlines()[0], p.name


def test_the_dp_outputs_get_only_the_columns_they_read(inputs: dict[str, Any], tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pruned = _run(inputs, tmp_path, "pruned", monkeypatch)
    policy = load_policy(POLICY)
    out = policy.outputs[0]
    want = [c for c in ("occurrence_datetime", "mci_category", "neighbourhood", "victim_person_id")]
    got = pruned["seen"][out.name]["columns"]
    assert sorted(got) == sorted([*want, ROW_DIGEST])
    whole = _run(inputs, tmp_path, "whole", monkeypatch, _frame_in_memory=True)
    assert {"offence", "premises_type", "record_id"} <= set(whole["seen"][out.name]["columns"])


def test_a_batch_digest_is_the_whole_frames(inputs: dict[str, Any]) -> None:  # noqa: F811
    # The score is per row and each batch holds the whole table's declared types (nulls included): per
    # batch from Arrow (the pruned sink's way) or from the whole frame (the frame path's), the same scores.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from release.batches import iter_batches

    table = pq.read_table(inputs["inputs"]["crimes"])
    key = bounding_key(run_key(7))
    whole = key.row_scores(to_frame(table))
    parts = np.concatenate([key.row_scores(pa.Table.from_batches([b])) for b in iter_batches(table, 97)])
    assert np.array_equal(whole, parts)
    assert len(np.unique(whole)) > len(whole) // 2  # a score, not a constant
