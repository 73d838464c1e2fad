"""k-anonymity on Spark: the frequency table as a group-by, the search on the driver, the recoding joined back.

Full-domain with record suppression is covered by test_spark_equivalence (arrests-strip-search); here
the same policy with local recoding (Mondrian) and with cell suppression, and the step's frequency
table against the records it stands for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import POLICIES
from tests.system.test_spark_equivalence import _no_seconds


def _variant(tmp: Path, change: dict[str, Any], drop: tuple[str, ...]) -> Path:
    doc = yaml.safe_load((POLICIES / "arrests-strip-search.yaml").read_text())
    step = next(s for s in doc["steps"] if s["type"] == "k-anonymity")
    for k in drop:
        step.pop(k, None)
    step.update(change)
    path = tmp / "arrests-variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _both_runners(pol: Path, tmp_path: Path, seed: int) -> tuple[Path, Path, list[str]]:
    """(Spark bundle, local bundle, the Spark run's progress lines) of one policy on the demo's records."""
    import pyarrow.parquet as pq

    from release.demo import demo_inputs
    from release.engine import run_release
    from release.policy.loader import load_policy
    from release.spark.runner import run_release_spark

    setup = demo_inputs(tmp_path / "in", 3000, lambda _m: None)
    declared = set(load_policy(pol).input.columns)
    src = next(Path(p) for p in setup["inputs"].values() if set(pq.read_schema(p).names) == declared)
    opts = dict(setup["options"])
    lines: list[str] = []
    s = run_release_spark(pol, src, tmp_path / "spark", options={**opts, "ledger": str(tmp_path / "a.sqlite")},
                          seed=seed, progress=lines.append).bundle
    loc = run_release(pol, src, tmp_path / "local", options={**opts, "ledger": str(tmp_path / "b.sqlite")},
                      seed=seed).bundle
    return s, loc, lines


@pytest.mark.parametrize("change, drop", [
    ({"recoding": "local"}, ("max_suppression", "suppression")),
    ({"suppression": "cells", "max_suppression": 0.1}, ()),
], ids=["local-recoding", "cell-suppression"])
def test_k_anonymity_on_spark_equals_local(spark: Any, tmp_path: Path, change: dict[str, Any],
                                           drop: tuple[str, ...]) -> None:


    pol = _variant(tmp_path, change, drop)
    s, loc, lines = _both_runners(pol, tmp_path, seed=6)
    assert any("frequency table on Spark" in x for x in lines), lines
    ra, rb = (json.loads((b / "report.json").read_text()) for b in (loc, s))
    step_l, step_s = _no_seconds(ra["steps"][-1]), _no_seconds(rb["steps"][-1])
    assert step_l == step_s
    if change.get("recoding") == "local":
        assert step_l["recoding"] == "local" and step_l["partitions"] > 1
    files = sorted(f.name for f in loc.iterdir() if f.suffix in (".csv", ".parquet"))
    assert files and all((loc / f).read_bytes() == (s / f).read_bytes() for f in files)


def test_frequency_table_decides_what_the_records_decide() -> None:
    """decide() on the frequency table and the step on the records: the same recoding and evidence, and
    the frequency table in any row order is put back in one canonical order."""
    from release.anonymize.step import COUNT
    from release.context import StepContext
    from release.policy.loader import load_policy

    policy = load_policy(POLICIES / "arrests-strip-search.yaml")
    step = next(s for s in policy.steps if s.type == "k-anonymity")
    rng = np.random.default_rng(2)  # test data only
    n = 4000
    frame = pd.DataFrame({
        "occurrence_date": pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        "age_group": pd.array(rng.choice(["Under 18", "18 to 24", "25 to 34", "35 to 44", "45 to 54"], n),
                              dtype="string"),
        "division": pd.array(rng.choice(["D11", "D12", "D13", "D14"], n), dtype="string"),
        "perceived_race": pd.array(rng.choice(["Black", "White", "South Asian", "Indigenous"], n), dtype="string"),
        "gender": pd.array(rng.choice(["Man", "Woman", "Gender diverse"], n, p=[0.6, 0.38, 0.02]), dtype="string"),
        "arrest": pd.array(rng.random(n) < 0.4, dtype="boolean"),
    })
    frame.loc[rng.random(n) < 0.01, "division"] = pd.NA
    from release.plan import compile_plan

    plan = compile_plan(policy)

    def ctx() -> StepContext:
        from datetime import UTC, datetime

        return StepContext(policy=policy, policy_path=POLICIES / "arrests-strip-search.yaml", schema=plan.schemas[1],
                           release_id="r", now=datetime(2025, 1, 1, tzinfo=UTC), seed=1, options={}, run_key=b"k" * 32)

    ft, inv = step.frequency_table(frame)
    assert len(ft) < n and int(ft[COUNT].sum()) == n
    # Another runner's table comes with each row's earliest raw time (FIRST), which fixes the order.
    with_first, _ = step.frequency_table(frame, firsts=True)
    shuffled = step.canonical_frequency(with_first.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(shuffled, ft)
    rec, ev = step.decide(ft, ctx())
    out, ev2 = step.apply(frame, ctx())
    assert _no_seconds(ev) == _no_seconds(ev2)
    pd.testing.assert_frame_equal(rec.apply(frame, inv), out)
    assert ev["suppressed_records"] == int(len(frame) - len(out)) > 0


def test_row_local_steps_after_k_anonymity_run_on_the_executors(spark: Any, tmp_path: Path) -> None:
    """A filter and keyed pseudonyms after the k-anonymity step run partition-wise over the recoded rows (no
    driver step), and the bundle is the local runner's: records byte for byte, every step's evidence."""


    doc = yaml.safe_load((POLICIES / "arrests-strip-search.yaml").read_text())
    doc["steps"] += [
        {"type": "filter", "exclude": {"column": "gender", "equals": "Man"}, "reason": "whole classes: k holds"},
        {"type": "pseudonymize", "columns": ["incident_id"], "method": "hmac", "secret_env": "RELEASE_PSEUDONYM_KEY",
         "prefix": "IN-"},
    ]
    doc["outputs"][0]["columns"] = ["incident_id", *doc["outputs"][0]["columns"]]
    pol = tmp_path / "arrests-later-steps.yaml"
    pol.write_text(yaml.safe_dump(doc, sort_keys=False))
    s, loc, lines = _both_runners(pol, tmp_path, seed=4)
    assert any("step 4/4: pseudonymize" in x and "on the executors" in x for x in lines), lines
    assert any("step 3/4: filter" in x and "on the executors" in x for x in lines), lines
    assert not any("(on the driver)" in x for x in lines), lines
    ra, rb = (json.loads((b / "report.json").read_text()) for b in (loc, s))
    assert _no_seconds(ra["steps"]) == _no_seconds(rb["steps"])
    assert ra["steps"][2]["type"] == "filter" and ra["steps"][2]["rows_excluded"] > 0
    files = sorted(f.name for f in loc.iterdir() if f.suffix in (".csv", ".parquet"))
    assert files and all((loc / f).read_bytes() == (s / f).read_bytes() for f in files)
    assert (loc / "arrests.csv").read_text().splitlines()[1].startswith("IN-")


@pytest.mark.parametrize("joint", ["block", "keep-earlier"])
def test_k_anonymity_in_a_series_on_spark_equals_local(spark: Any, tmp_path: Path, joint: str) -> None:
    """A re-release series: the first release (no predecessor) and, with series.joint block, the second run
    k-anonymity entirely on Spark; with keep-earlier the frequency table, search and recoding run on Spark and
    the adjustment against the earlier release on the driver. Both runners publish the same bytes and evidence."""
    from release.engine import run_release
    from release.spark.runner import run_release_spark
    from tests.system.mini import write_policy
    from tests.system.test_series_joint import V1, V2, joint_policy, records

    got: dict[str, Path] = {}
    lines: list[str] = []
    for name, fn in (("local", run_release), ("spark", run_release_spark)):
        out = tmp_path / f"pub-{name}"
        for tag, pol, n in (("v1", joint_policy(levels=V1), 480),
                            # block: the same node again (another one would fail the joint check).
                            ("v2", joint_policy("people-q2", levels=V1 if joint == "block" else V2, joint=joint),
                             840)):
            rec = tmp_path / f"{tag}.parquet"
            records(n).to_parquet(rec, index=False)
            kw = {"progress": lines.append} if name == "spark" else {}
            res = fn(write_policy(tmp_path / f"{tag}-{name}.yaml", pol), rec, out, **kw)
            got[f"{name}-{tag}"] = res.bundle
    assert sum("frequency table on Spark" in x for x in lines) == 2, lines
    assert any(f"series.joint {joint}" in x and "on the driver" in x for x in lines) == (joint != "block"), lines
    for tag in ("v1", "v2"):
        la, sa = got[f"local-{tag}"], got[f"spark-{tag}"]
        ra, rb = (json.loads((b / "report.json").read_text()) for b in (la, sa))
        assert _no_seconds(ra["steps"]) == _no_seconds(rb["steps"])
        assert (la / "people.csv").read_bytes() == (sa / "people.csv").read_bytes()
    ev = json.loads((got["spark-v2"] / "report.json").read_text())["steps"][-1]
    if joint == "keep-earlier":
        assert ev["series_joint"]["records_at_earlier_values"] == 480
    else:
        assert "series_joint" not in ev


@pytest.mark.parametrize("recoding", ["full-domain", "local"])
@pytest.mark.parametrize("n", [2000, 10000])
def test_frequency_table_on_level0_times_decides_what_raw_times_decide(recoding: str, n: int) -> None:
    """The frequency table groups a time quasi-identifier on its hierarchy's first unit (quarters, not days):
    far fewer rows, and the same decision, evidence and published records as the table of the raw days
    (what frequency_table built before), for full-domain and local recoding (whose tie-breaks follow the order
    in which values first appear: the rows keep the order the raw times gave them; local recoding on 10,000
    synthetic records decides otherwise without that order)."""
    from datetime import UTC, datetime

    from release.anonymize.step import COUNT
    from release.context import StepContext
    from release.plan import compile_plan
    from release.policy.loader import parse_policy

    doc = yaml.safe_load((POLICIES / "arrests-strip-search.yaml").read_text())
    step_doc = next(s for s in doc["steps"] if s["type"] == "k-anonymity")
    if recoding == "local":
        step_doc.pop("max_suppression")
        step_doc.pop("suppression")
        step_doc["recoding"] = "local"
    policy = parse_policy(yaml.safe_dump(doc, sort_keys=False), "arrests.yaml")
    step = next(s for s in policy.steps if s.type == "k-anonymity")
    plan = compile_plan(policy)
    from release.synth.records import synth_use_of_force

    raw = synth_use_of_force(n)
    frame = pd.DataFrame({"occurrence_date": pd.to_datetime(raw["occurrence_date"])})
    for c in ("age_group", "division", "perceived_race", "gender"):
        frame[c] = pd.array(raw[c].astype(str), dtype="string")
    frame["arrest"] = pd.array(raw["arrest"].astype(str).str.lower().isin(["true", "1"]), dtype="boolean")
    frame.loc[frame.index % 97 == 0, "occurrence_date"] = pd.NaT

    def ctx() -> StepContext:
        return StepContext(policy=policy, policy_path=POLICIES / "arrests-strip-search.yaml", schema=plan.schemas[1],
                           release_id="r", now=datetime(2025, 1, 1, tzinfo=UTC), seed=1, options={}, run_key=b"k" * 32)

    cols = step.frequency_columns()
    g = frame[cols].groupby(cols, dropna=False, sort=True, observed=True)  # the table of the raw days
    raw_ft = g.size().rename(COUNT).reset_index()
    raw_ft[COUNT] = raw_ft[COUNT].astype(np.int64)
    raw_inv = g.ngroup().to_numpy(dtype=np.int64)
    ft, inv = step.frequency_table(frame)
    assert int(ft[COUNT].sum()) == n and len(ft) < 0.9 * len(raw_ft)
    assert ft["occurrence_date"].dropna().dt.day.eq(1).all()  # quarter starts
    raw_ctx, new_ctx = ctx(), ctx()
    raw_rec, raw_ev = step.decide(raw_ft, raw_ctx)
    rec, ev = step.decide(ft, new_ctx)
    assert _no_seconds(ev) == _no_seconds(raw_ev)
    assert json.dumps(_no_seconds(ev)) == json.dumps(_no_seconds(raw_ev))  # the same key order too
    assert new_ctx.internal == raw_ctx.internal
    pd.testing.assert_frame_equal(rec.apply(frame, inv), raw_rec.apply(frame, raw_inv))


def test_steps_after_a_k_anonymity_step_that_removes_every_record(spark: Any, tmp_path: Path) -> None:
    """k beyond the file and every record suppressed: the filter after it runs over no row on any partition,
    and still records the evidence the local runner records (an empty published file in both)."""
    from release.demo import demo_inputs
    from release.engine import run_release
    from release.spark.runner import run_release_spark

    doc = yaml.safe_load((POLICIES / "arrests-strip-search.yaml").read_text())
    step = next(s for s in doc["steps"] if s["type"] == "k-anonymity")
    step.update(k=100000, max_suppression=1.0)
    doc["steps"].append({"type": "filter", "exclude": {"column": "gender", "equals": "Man"}, "reason": "after"})
    pol = tmp_path / "arrests-nothing-left.yaml"
    pol.write_text(yaml.safe_dump(doc, sort_keys=False))
    setup = demo_inputs(tmp_path / "in", 750, lambda _m: None)
    src = setup["inputs"]["use-of-force"]
    lines: list[str] = []
    got = [fn(pol, src, tmp_path / name, options={**setup["options"], "ledger": str(tmp_path / f"{name}.db")},
              seed=3, **kw).bundle
           for name, fn, kw in (("local", run_release, {}), ("spark", run_release_spark, {"progress": lines.append}))]
    assert any("step 3/3: filter" in x and "on the executors" in x for x in lines), lines
    ra, rb = (json.loads((b / "report.json").read_text()) for b in got)
    assert _no_seconds(ra["steps"]) == _no_seconds(rb["steps"])
    assert ra["steps"][1]["suppressed_share"] == 1.0 and ra["steps"][2]["rows_excluded"] == 0
    assert (got[0] / "arrests.csv").read_bytes() == (got[1] / "arrests.csv").read_bytes()
