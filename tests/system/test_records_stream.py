"""Streamed records outputs (external sort with spilled runs, files written as merged batches arrive) publish the bytes of the whole-frame path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from release.batches import row_local_prefix
from release.engine import run_release
from release.policy.loader import load_policy
from tests.system.test_batch_invariance import _demo_input, _deterministic, _policies, inputs  # noqa: F401 - fixture

STREAMED = [p for p in _policies() if (lambda pol: len(row_local_prefix(pol)) == len(pol.steps)
                                      and all(o.kind == "records" for o in pol.outputs))(load_policy(p))]


def count_sort_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of spilled runs of every external sort closed from now on (appended as each closes)."""
    from release.io import extsort

    runs: list[int] = []
    close = extsort.ExternalSort.close

    def counting_close(self: extsort.ExternalSort) -> None:
        runs.append(self.runs)
        close(self)

    monkeypatch.setattr(extsort.ExternalSort, "close", counting_close)
    return runs


def test_some_bundled_policy_streams() -> None:
    assert any(p.stem == "crime-indicators" for p in STREAMED)


@pytest.mark.parametrize("policy_path", STREAMED, ids=lambda p: p.stem)
def test_many_tiny_spilled_runs_publish_the_in_memory_bytes(policy_path: Path, inputs: dict[str, Any],  # noqa: F811
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(policy_path)
    kind = _demo_input(policy, inputs)
    now = datetime.now(UTC).replace(microsecond=0)
    runs = count_sort_runs(monkeypatch)
    got = {}
    for name, extra, memory_mb in (("frame", {"_records_in_memory": True}, None),
                                   ("streamed", {"batch_rows": 150, "_shuffle_batches": True}, "0.001")):
        if memory_mb:
            monkeypatch.setenv("RELEASE_SORT_MEMORY_MB", memory_mb)
        opts = {**inputs["options"], "ledger": str(tmp_path / f"{name}.sqlite"), **extra}
        res = run_release(policy_path, inputs["inputs"][kind], tmp_path / name, options=opts, seed=7, now=now)
        assert res.bundle is not None
        assert not list(res.bundle.parent.glob(".staging-*")), "the staging folder is left behind"
        got[name] = _deterministic(res.bundle)
        got[name]["rows"] = sum(o["evidence"]["rows"] for o in res.report["outputs"])
    if got["frame"]["rows"] > 600:
        assert runs and min(runs) > 3, f"the streamed run spilled {runs} runs: the merge of many runs is not tested"
    frame, streamed = got["frame"], got["streamed"]
    assert frame["files"] and frame["files"].keys() == streamed["files"].keys()
    for f in frame["files"]:
        assert frame["files"][f] == streamed["files"][f], f"{f} differs between the streamed and the in-memory path"
    for k in ("steps", "validation", "outputs"):
        assert frame[k] == streamed[k], k


def test_a_refused_input_after_runs_were_spilled_leaves_no_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The spilled runs live in the bundle's staging folder; a run refused at the end of the row
    # pipeline takes it away with every folder the run made (nothing under the publication folder).
    from release.errors import InputError
    from release.io import extsort
    from tests.system.mini import mini_policy, mini_records, write_policy

    pol = mini_policy()
    pol["input"]["on_invalid"] = "refuse"
    policy = write_policy(tmp_path / "mini.yaml", pol)
    recs = mini_records(600).astype({"age": object})
    recs.loc[590, "age"] = "not a number"
    inp = tmp_path / "in.csv"
    recs.to_csv(inp, index=False)
    spilled: list[int] = []
    spill = extsort.ExternalSort._spill

    def counting(self: extsort.ExternalSort) -> None:
        spill(self)
        spilled.append(self.runs)

    monkeypatch.setattr(extsort.ExternalSort, "_spill", counting)
    monkeypatch.setenv("RELEASE_SORT_MEMORY_MB", "0.001")
    out = tmp_path / "publish" / "out"
    with pytest.raises(InputError):
        run_release(policy, inp, out, seed=1, options={"batch_rows": 100})
    assert spilled and max(spilled) > 1, "no run was spilled before the refusal"
    assert not (tmp_path / "publish").exists()
