"""End to end: synthetic records through bundled policies, per stage, beside the pyarrow floor, each a whole process.

For each size (BENCH_E2E_SIZES, default 100000,1000000) and policy (BENCH_E2E_POLICIES, default
crime-indicators, monthly-crime-counts, arrests-strip-search), one child process runs
`release.engine.run_release` and reports the seconds between its progress stages, its wall and
CPU seconds and its peak RSS; beside it, in the same run, the floor: a child process that reads
the same input file with pyarrow and writes all its columns to CSV and Parquet, no protection.
Inputs are written once per size under BENCH_E2E_DIR (default /tmp/release-bench-e2e), as CSV.

    python -m benchmarks.bench_end_to_end                # or: python -m benchmarks.run bench_end_to_end
    BENCH_E2E_SIZES=10000000 BENCH_E2E_POLICIES=crime-indicators python -m benchmarks.bench_end_to_end

Per run it prints the seconds of each stage and the peak RSS reached by the end of each stage.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below

ROOT = Path(__file__).resolve().parent.parent
SIZES = [int(x) for x in os.environ.get("BENCH_E2E_SIZES", "100000,1000000").split(",") if x]
POLICIES = [p for p in os.environ.get("BENCH_E2E_POLICIES",
                                      "crime-indicators,monthly-crime-counts,arrests-strip-search").split(",") if p]
WORK = Path(os.environ.get("BENCH_E2E_DIR", "/tmp/release-bench-e2e"))
KINDS = {"crime-indicators": "crimes", "monthly-crime-counts": "crimes", "arrests-strip-search": "use-of-force",
         "shootings": "crimes", "hate-crimes": "crimes"}

# One child process per measurement: peak RSS and CPU time are the child's alone.
_RUN = r"""
import json, os, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from release.engine import run_release
stages, last = [], [time.perf_counter(), "start"]
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
def progress(msg):
    now = time.perf_counter()
    stages.append((last[1], now - last[0], hwm()))
    last[:] = [now, msg]
policy, inp, out, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
res = run_release(policy, inp, out, options=opts, progress=progress)
now = time.perf_counter()
stages.append((last[1], now - last[0], hwm()))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"verdict": res.verdict, "stages": stages, "wall": now - t0,
                  "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}))
"""

_FLOOR = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import pyarrow.csv as pacsv, pyarrow.parquet as pq
inp, out = sys.argv[1], sys.argv[2]
t = pacsv.read_csv(inp)
pacsv.write_csv(t, out + ".csv")
pq.write_table(t, out + ".parquet", compression="zstd")
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}))
"""


def _stage(msg: str) -> str:
    """Progress messages grouped into the stages the table shows."""
    for key, name in (("reading", "read"), ("validating", "validate+row steps"), ("step", "driver steps"),
                      ("output", "outputs"), ("assessing", "assess"), ("writing internal", "internal+report"),
                      ("writing bundle", "bundle"), ("start", "import")):
        if msg.startswith(key):
            return name
    return "other"


MAX_RSS_MB = int(os.environ.get("BENCH_E2E_MAX_RSS_MB", "12000"))
MAX_SECONDS = int(os.environ.get("BENCH_E2E_MAX_SECONDS", "900"))
"A child over either limit is stopped (the machine is shared): the figure is then 'stopped at ...'."


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _child(code: str, *args: str, config: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, "RELEASE_CONFIG": str(config or WORK / "release.toml"), "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out_f, stderr=err_f, text=True, env=env)
        peak = 0.0
        while p.poll() is None:
            peak = max(peak, _rss_mb(p.pid))
            if peak > MAX_RSS_MB or time.perf_counter() - t > MAX_SECONDS:
                p.kill()
                p.wait()
                return {"stopped": f"stopped at {peak:,.0f} MB RSS after {time.perf_counter() - t:.0f} s"}
            time.sleep(0.25)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if p.returncode != 0:
        raise SystemExit(f"benchmark child failed ({p.returncode}):\n{stderr[-3000:]}")
    out: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    out["process_wall"] = time.perf_counter() - t
    return out


def _run_config(tag: str) -> Path:
    """A deployment configuration of its own for one run: a fresh budget ledger (the benchmark measures
    a release, not the budget running out)."""
    base = (WORK / "release.toml").read_text(encoding="utf-8")
    cfg = WORK / "runs" / f"{tag}.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(base.replace(f'path = "{WORK / "ledger.sqlite"}"', f'path = "{WORK / "runs" / tag}.sqlite"'),
                   encoding="utf-8")
    return cfg


def _setup() -> None:
    from release.dp.sources import DEMO_BUDGET

    WORK.mkdir(parents=True, exist_ok=True)
    net = WORK / "net"
    budget = DEMO_BUDGET.replace('path = "ledger.sqlite"', f'path = "{WORK / "ledger.sqlite"}"')
    key = WORK / "keys" / "release.pem"
    if not key.exists():
        subprocess.run([sys.executable, "-m", "release", "keygen", "--kind", "release", "--out", str(key),
                        "--keyring", str(WORK / "keys" / "release-keyring.json"), "--name", "bench"], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    (WORK / "release.toml").write_text(
        "[approval]\nrequired = false\n"
        f'[signing]\nkey = "{key}"\nkeyring = "{WORK / "keys" / "release-keyring.json"}"\n[files]\n'
        f'network = "{net / "nodes.csv"}"\naddresses = "{net / "addresses.csv"}"\n'
        f'streets = "{net / "streets.geojson"}"\n[files.layers]\n'
        f'neighbourhoods = "{net / "neighbourhoods.geojson"}"\ndivisions = "{net / "divisions.geojson"}"\n'
        f'[internal]\nfolder = "{WORK / "internal"}"\n' + budget, encoding="utf-8")
    os.environ.setdefault("RELEASE_PSEUDONYM_KEY", "bench-key-0123456789abcdef0123456789")


def _input(kind: str, n: int) -> Path:
    p = WORK / f"{kind}-{n}.csv"
    base = WORK / f"{kind}-1000000.csv"
    if not p.exists() and n > 1_000_000 and n % 1_000_000 == 0:
        # Ten million records: copies of the one-million file with their record ids made unique
        # (synthesizing 10M afresh takes longer than the run measured; the distributions are the same).
        _input(kind, 1_000_000)
        import pyarrow.csv as pacsv

        t = pacsv.read_csv(base, convert_options=pacsv.ConvertOptions(
            column_types={c: "string" for c in base.open().readline().strip().split(",")}))
        rid = t.schema.names[0]
        tmp = p.with_suffix(".partial")
        with pacsv.CSVWriter(tmp, t.schema) as w:
            for k in range(n // 1_000_000):
                ids = pa.compute.binary_join_element_wise(t[rid], pa.scalar(f"-{k}"), "")
                w.write_table(t.set_column(0, rid, ids))
        tmp.rename(p)
        return p
    if not p.exists():
        args = ["--out", str(p), "--records", str(n), "--kind", kind]
        if not (WORK / "net" / "nodes.csv").exists():
            args += ["--network-out", str(WORK / "net")]
        subprocess.run([sys.executable, "-m", "release", "synth", *args], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    return p


def main() -> None:
    _setup()
    print(f"end to end, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; inputs under {WORK}")
    for n in SIZES:
        for policy in POLICIES:
            kind = KINDS.get(policy, "crimes")
            inp = _input("crimes" if kind == "crimes" else kind, n)
            floor = _child(_FLOOR, str(inp), str(WORK / f"floor-{kind}-{n}"))
            tag = f"{policy}-{n}-{time.time_ns()}"
            run = _child(_RUN, str(ROOT / "policies" / f"{policy}.yaml"), str(inp), str(WORK / "runs" / f"out-{tag}"),
                         "{}", config=_run_config(tag))
            shutil.rmtree(WORK / "runs" / f"out-{tag}", ignore_errors=True)
            if "stopped" in run:
                print(f"\n{policy} on {n:,} {kind}: {run['stopped']} (limits: BENCH_E2E_MAX_RSS_MB={MAX_RSS_MB},"
                      f" BENCH_E2E_MAX_SECONDS={MAX_SECONDS}) | floor {floor['process_wall']:.1f} s wall,"
                      f" {floor['cpu']:.1f} s CPU, {floor['rss_mb']:,.0f} MB")
                continue
            by: dict[str, float] = {}
            peak: dict[str, float] = {}
            for msg, secs, hw in run["stages"]:
                by[_stage(msg)] = by.get(_stage(msg), 0.0) + secs
                peak[_stage(msg)] = hw  # the high-water mark at the end of the stage
            ratio = run["process_wall"] / floor["process_wall"]
            print(f"\n{policy} on {n:,} {kind} ({run['verdict']}): {run['process_wall']:.1f} s wall, "
                  f"{run['cpu']:.1f} s CPU, peak RSS {run['rss_mb']:,.0f} MB | floor {floor['process_wall']:.1f} s wall, "
                  f"{floor['cpu']:.1f} s CPU, {floor['rss_mb']:,.0f} MB | {ratio:.1f}x the floor (wall), "
                  f"{run['cpu'] / max(floor['cpu'], 1e-9):.1f}x (CPU)")
            print("  " + ", ".join(f"{k} {v:.1f}" for k, v in by.items()))
            # Where the peak was reached: the high-water mark after each stage (MB).
            print("  peak RSS after: " + ", ".join(f"{k} {v:,.0f}" for k, v in peak.items()))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nall children: {ru.ru_utime + ru.ru_stime:.0f} s CPU")


if __name__ == "__main__":
    main()
