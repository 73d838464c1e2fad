"""k-anonymity's frequency table over raw days vs level-0 times (arrests-strip-search, synthetic use-of-force).

    .venv/bin/python -m benchmarks.bench_frequency_table [CSV]

CSV defaults to bench_end_to_end's 1M use-of-force file (/tmp/release-bench-e2e/use-of-force-1000000.csv).
Prints the table's rows both ways and the step (table, decide, recoding applied) both ways, wall and
process CPU seconds, and whether the evidence and the recoded records are the same (they must be).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    from release.anonymize.step import COUNT
    from release.context import StepContext
    from release.plan import compile_plan
    from release.policy.loader import load_policy

    csv = Path(argv[0]) if argv else Path("/tmp/release-bench-e2e/use-of-force-1000000.csv")
    policy = load_policy(ROOT / "policies" / "arrests-strip-search.yaml")
    step = next(s for s in policy.steps if s.type == "k-anonymity")
    plan = compile_plan(policy)
    cols = step.frequency_columns()
    df = pd.read_csv(csv, usecols=cols, dtype=str)
    frame = pd.DataFrame({"occurrence_date": pd.to_datetime(df["occurrence_date"])})
    for c in cols[1:]:
        frame[c] = (pd.array(df[c].str.lower().map({"true": True, "false": False}), dtype="boolean")
                    if c == "arrest" else pd.array(df[c], dtype="string"))

    def ctx() -> StepContext:
        return StepContext(policy=policy, policy_path=None, schema=plan.schemas[1], release_id="bench",
                           now=datetime(2025, 1, 1, tzinfo=UTC), seed=1, options={}, run_key=b"k" * 32)

    c0, t0 = time.process_time(), time.perf_counter()
    g = frame[cols].groupby(cols, dropna=False, sort=True, observed=True)  # the table frequency_table built before
    raw_ft = g.size().rename(COUNT).reset_index()
    raw_ft[COUNT] = raw_ft[COUNT].astype(np.int64)
    raw_rec, raw_ev = step.decide(raw_ft, ctx())
    raw_out = raw_rec.apply(frame, g.ngroup().to_numpy(dtype=np.int64))
    c_raw, t_raw = time.process_time() - c0, time.perf_counter() - t0
    c0, t0 = time.process_time(), time.perf_counter()
    ft, inv = step.frequency_table(frame)
    rec, ev = step.decide(ft, ctx())
    out = rec.apply(frame, inv)
    c_new, t_new = time.process_time() - c0, time.perf_counter() - t0
    raw_ev.pop("search_seconds")
    ev.pop("search_seconds")
    print(f"{len(frame):,} records: frequency table on raw days {len(raw_ft):,} rows, on level-0 times"
          f" ({', '.join(f'{c}: {u}' for c, u in step.level0_times().items())}) {len(ft):,} rows")
    print(f"k-anonymity step (table, decide, recoding applied): raw days {t_raw:.2f} s wall / {c_raw:.2f} s CPU;"
          f" level-0 times {t_new:.2f} s wall / {c_new:.2f} s CPU; same evidence {raw_ev == ev},"
          f" same records {out.equals(raw_out)}")


if __name__ == "__main__":
    main(sys.argv[1:])
