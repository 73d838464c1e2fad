"""The Spark runner on local[2]: DP table vs Spark's own bounded group-by vs Tumult; table output and end to end vs local.

    .venv/bin/python -m benchmarks.bench_spark [--rows N] [--no-tumult] [--no-e2e | --only-e2e]
        [--e2e-policies crime-indicators,...]

1. DP table (the engine on Spark: keyed bounding with window functions, exact group-by, OpenDP noise on
   the driver) against Spark computing the same exact counts after the same kind of bounding with its own
   window functions and hash (xxhash64): no Python worker, no noise. Same session, same cached data.
2. Tumult Analytics' DP count (MaxRowsPerID, the same bound) on the same Parquet file, in its own
   environment (.venv-tumult: tmlt.analytics 0.21 needs pyspark 3.5), beside Spark's exact group-by in
   that process.
3. `table` output (use-of-force-by-gender: cell counts as a group-by), k-anonymity (arrests-strip-search:
   frequency table as a group-by, recoding joined back) and crime-indicators end to end: `release run
   --engine spark` against the local runner, in this process, on the same synthetic records.
Every figure is wall-clock seconds (best of `REPS` where stated) with the process CPU seconds beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench_dp import CATEGORIES, DIVISIONS, MONTHS, POLICY

ROOT = Path(__file__).resolve().parent.parent
TUMULT_VENV = ROOT / ".venv-tumult"
MAX_RECORDS = 3
REPS = 2
# The end-to-end policies and the kind of synthetic records each reads.
E2E = (("use-of-force-by-gender", "use-of-force"), ("arrests-strip-search", "use-of-force"),
       ("crime-indicators", "crimes"))


def synth(n: int, path: Path) -> None:
    """bench_dp's records (a heavy tail of repeat persons) as Parquet in 8 row groups (8 Spark partitions)."""
    rng = np.random.default_rng(5)  # benchmark data only
    persons = np.minimum(rng.zipf(1.6, n), 1_000_000) + rng.integers(0, n // 3, n) * (rng.random(n) < 0.7)
    t = pa.table({
        "record_id": pa.array(np.char.add("R", np.arange(n).astype("U9"))),
        "person_id": pa.array(np.char.add("P", persons.astype("U9"))),
        "division": pa.array(np.asarray(DIVISIONS)[rng.integers(0, 16, n)]),
        "month": pa.array(np.asarray(MONTHS)[rng.integers(0, 9, n)]),
        "category": pa.array(np.asarray(CATEGORIES)[rng.integers(0, 5, n)]),
    })
    pq.write_table(t, path, row_group_size=max(n // 8, 1))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def timed(fn: Any, reps: int = REPS) -> tuple[float, float, Any]:
    """(best wall seconds, CPU seconds of this process and its finished children in that rep, result)."""
    best, best_cpu, out = float("inf"), 0.0, None
    for _ in range(reps):
        gc.collect()
        c0, t0 = cpu(), time.perf_counter()
        out = fn()
        t = time.perf_counter() - t0
        if t < best:
            best, best_cpu = t, cpu() - c0
    return best, best_cpu, out


def spark_native_bounded_counts(df: Any, by: list[str], unit: str, max_records: int) -> Any:
    """Spark alone: each unit keeps its max_records rows of least keyed hash (xxhash64), then an exact group-by."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    score = F.xxhash64(F.lit("run-key"), *[F.col(c) for c in df.columns])
    w = Window.partitionBy(unit).orderBy(score)
    kept = df.withColumn("_rk", F.row_number().over(w)).where(F.col("_rk") <= max_records)
    return kept.groupBy(*by).count().collect()


def dp_table_on_spark(spark: Any, rows: Any, policy: Any, ctx: Any) -> Any:
    from release.spark.dp import bounded_groups

    out = policy.outputs[0]
    groups, stats = bounded_groups(rows, out, ctx)
    return out.build_from_groups(groups, stats, ctx)


def ensure_tumult_env() -> Path | None:
    """.venv-tumult (tmlt.analytics 0.21 with its pyspark 3.5), made once; None when it cannot be made."""
    py = TUMULT_VENV / "bin" / "python"
    stamp = TUMULT_VENV / ".installed"
    if stamp.is_file() and py.exists():
        return py
    print(f"setting up {TUMULT_VENV.name} (tmlt.analytics 0.21, pyspark 3.5)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(TUMULT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "tmlt.analytics==0.21.*"], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"note: cannot make {TUMULT_VENV.name} ({e}); Tumult skipped")
        return None
    stamp.touch()
    return py


def tumult(path: Path) -> dict[str, Any] | None:
    py = ensure_tumult_env()
    if py is None:
        return None
    t0 = time.perf_counter()
    c0 = cpu()
    got = subprocess.run([str(py), str(ROOT / "benchmarks" / "tumult_count.py"), str(path), "person_id",
                          "division,month,category", str(MAX_RECORDS), "1.0"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")})
    if got.returncode != 0:
        print(f"note: Tumult failed: {got.stderr.strip().splitlines()[-1:]}")
        return None
    line = [x for x in got.stdout.splitlines() if x.startswith("{")][-1]
    res: dict[str, Any] = json.loads(line)
    res["process_s"] = round(time.perf_counter() - t0, 1)
    res["process_cpu_s"] = round(cpu() - c0, 1)
    return res


def e2e_inputs(work: Path, n: int, kind: str) -> tuple[Path, dict[str, str]]:
    """The demo city's network files and `n` synthetic records of one kind (Parquet), made once per size."""
    from release.synth import demo_city, synth_crimes, synth_use_of_force, write_records

    net = work / "network"
    if not (net / "nodes.csv").exists():
        demo_city().write(net)
    records = work / f"{kind}-{n}.parquet"
    if not records.exists():
        write_records(synth_crimes(n, demo_city()) if kind == "crimes" else synth_use_of_force(n), records)
    options = {"network": str(net / "nodes.csv"), "addresses": str(net / "addresses.csv"),
               "streets": str(net / "streets.geojson"), "neighbourhoods": str(net / "neighbourhoods.geojson"),
               "divisions": str(net / "divisions.geojson")}
    return records, options


def end_to_end(policy: str, kind: str, n: int, work: Path,
               runners: tuple[str, ...] = ("local", "spark")) -> dict[str, float]:
    """Local runner vs Spark runner on one bundled policy over synthetic records (seconds, CPU seconds)."""
    from release.engine import run_release
    from release.spark.runner import run_release_spark

    records, options = e2e_inputs(work, n, kind)
    os.environ.setdefault("RELEASE_PSEUDONYM_KEY", "bench-key-0123456789abcdef0123456789")
    # Warm-up on a small input of the same kind: Spark's Python workers start and import the engine once.
    small, _ = e2e_inputs(work, 2000, kind)
    run_release_spark(ROOT / "policies" / f"{policy}.yaml", small, work / "warm-up",
                      options={**options, "ledger": str(work / "ledger-warm-up.sqlite")})
    figs: dict[str, float] = {}
    for name, fn in (("local", run_release), ("spark", run_release_spark)):
        if name not in runners:
            continue
        opts = {**options, "ledger": str(work / f"ledger-{name}-{policy}.sqlite")}
        gc.collect()
        c0, t0 = cpu(), time.perf_counter()
        fn(ROOT / "policies" / f"{policy}.yaml", records, work / f"out-{name}-{policy}", options=opts)
        figs[f"{name}_s"] = time.perf_counter() - t0
        figs[f"{name}_cpu_s"] = cpu() - c0
        print(f"  {policy} {name}: {figs[f'{name}_s']:.1f} s (cpu {figs[f'{name}_cpu_s']:.1f})", flush=True)
    return figs


def dp_part(spark: Any, work: Path, args: Any) -> None:
    """The DP table on Spark vs Spark's own bounded counts, then Tumult on the same file."""
    data = work / "records.parquet"
    synth(args.rows, data)
    from release.batches import run_key
    from release.context import StepContext
    from release.plan import compile_plan
    from release.policy.loader import parse_policy

    text = POLICY.replace("UNIT", "person_id")  # bench_dp's policy
    policy = parse_policy(text, "bench-spark.yaml")
    ctx = StepContext(policy=policy, policy_path=None, schema=compile_plan(policy).final_schema,
                      release_id="bench", now=datetime.now(UTC), run_key=run_key(1))
    # Both sides read the same cached partitions (8: every core busy on local[2]).
    rows = spark.read.parquet(str(data)).repartition(8).cache()
    n = rows.count()
    by = ["division", "month", "category"]
    # Warm-up: Python workers started, OpenDP loaded, the data cached.
    dp_table_on_spark(spark, rows, policy, ctx)
    t_dp, c_dp, build = timed(lambda: dp_table_on_spark(spark, rows, policy, ctx))
    t_sp, c_sp, exact = timed(lambda: spark_native_bounded_counts(rows, by, "person_id", MAX_RECORDS))
    t_gb, c_gb, _ = timed(lambda: rows.groupBy(*by).count().collect())
    cells = len(build.tables["counts"])
    print(f"{n:,} records in {rows.rdd.getNumPartitions()} partitions on local[2], {cells} cells, "
          f"{MAX_RECORDS} records per person, epsilon 1.0 (Spark {spark.version})")
    print(f"{'method':<62} {'wall s':>7} {'cpu s':>7} {'ratio':>6}")
    print(f"{'engine dp-table on Spark (keyed bounding, group-by, OpenDP noise)':<62} {t_dp:>7.2f} {c_dp:>7.2f} {1:>6.2f}")
    print(f"{'Spark alone: xxhash64 bounding (window) + exact group-by':<62} {t_sp:>7.2f} {c_sp:>7.2f}"
          f" {t_dp / t_sp:>6.2f}")
    print(f"{'Spark alone: exact group-by, no bounding':<62} {t_gb:>7.2f} {c_gb:>7.2f} {t_dp / t_gb:>6.2f}")
    print(f"engine on Spark vs Spark's own bounded counts: {t_dp / t_sp:.2f}x (target <= 1.5x);"
          f" {len(exact)} exact cells")
    print("(cpu s counts the driver process and finished children only: Spark's executors run in the driver's JVM"
          " child, so their CPU shows up once that JVM exits; compare wall seconds)")
    rows.unpersist()
    if not args.no_tumult:
        tm = tumult(data)
        if tm is not None:
            print(f"Tumult Analytics {tm['pyspark']} in .venv-tumult: DP count (MaxRowsPerID {MAX_RECORDS}) "
                  f"{tm['tumult_s']:.2f} s, Spark exact group-by in that process {tm['spark_exact_groupby_s']:.2f} s"
                  f" ({tm['tumult_s'] / tm['spark_exact_groupby_s']:.1f}x); engine dp-table on Spark here"
                  f" {t_dp:.2f} s vs exact group-by here {t_gb:.2f} s ({t_dp / t_gb:.1f}x);"
                  f" whole Tumult process {tm['process_s']} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench_spark")
    ap.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_SPARK_RECORDS", 1_000_000)))
    ap.add_argument("--no-tumult", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--only-e2e", action="store_true", help="skip the DP table and Tumult parts")
    ap.add_argument("--e2e-runners", default="local,spark",
                    help="which runners the end-to-end part times (default both; 'spark' alone at 10M saves the local run)")
    ap.add_argument("--driver-memory", default="3g", help="spark.driver.memory of the local[2] session")
    ap.add_argument("--e2e-policies", default=",".join(p for p, _ in E2E),
                    help="comma-separated end-to-end policies (default: all three)")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    from release.spark.session import SparkSettings, session, unavailable

    why = unavailable()
    if why:
        print(f"skipped: {why}")
        return
    os.environ.setdefault("RELEASE_TEST_MODE", "1")  # the run key of a test-mode run; noise is OpenDP's anyway
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    spark = session(SparkSettings(master="local[2]", conf={"spark.sql.shuffle.partitions": "8",
                                                           "spark.driver.memory": args.driver_memory}), "bench")
    if not args.only_e2e:
        dp_part(spark, work, args)
    if not (args.no_e2e or not args.only_e2e and args.rows > 1_000_000):
        config = work / "release.toml"
        config.write_text("[approval]\nrequired = false\n", encoding="utf-8")
        os.environ["RELEASE_CONFIG"] = str(config)
        wanted = [p.strip() for p in args.e2e_policies.split(",") if p.strip()]
        unknown = sorted(set(wanted) - {p for p, _ in E2E})
        if unknown:
            ap.error(f"--e2e-policies: unknown {', '.join(unknown)} (known: {', '.join(p for p, _ in E2E)})")
        for pol, kind in ((p, k) for p, k in E2E if p in wanted):
            from release.errors import BlockedError

            try:
                f = end_to_end(pol, kind, args.rows, work / "e2e",
                               tuple(r.strip() for r in args.e2e_runners.split(",")))
            except BlockedError as e:
                print(f"{pol} end to end on {args.rows:,} synthetic records ({kind}): blocked by the gate ({e})")
                continue
            if "local_s" not in f or "spark_s" not in f:
                continue  # one runner: its line is printed as it finishes
            print(f"{pol} end to end on {args.rows:,} synthetic records ({kind}): local {f['local_s']:.1f} s"
                  f" (cpu {f['local_cpu_s']:.1f}), Spark local[2] {f['spark_s']:.1f} s (cpu {f['spark_cpu_s']:.1f}):"
                  f" {f['spark_s'] / f['local_s']:.2f}x", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
