"""1M records through one policy: read from PostgreSQL (ADBC, one snapshot) vs the same rows from Parquet.

Also times the two read paths alone, and psycopg 3's `COPY ... TO STDOUT (FORMAT csv)` parsed by
pyarrow (the alternative to ADBC that release/io/postgres.py was chosen against).
Needs the PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin) and a `postgres` user, as the tests do.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N = int(os.environ.get("BENCH_PG_RECORDS", 1_000_000))
REPEATS = int(os.environ.get("BENCH_PG_REPEATS", 2))


def records(n: int) -> pd.DataFrame:
    """The mini test policy's columns (tests/system/mini.py), vectorized, in record-id order."""
    rng = np.random.default_rng(7)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24 * 3600, n), unit="s")
    ids = pd.Series(np.arange(n)).map("R{:08d}".format)
    return pd.DataFrame({
        "record_id": ids,
        "occurred": t.strftime("%Y-%m-%dT%H:%M:%S"),
        "category": rng.choice(["Assault", "Robbery", "Theft"], n),
        "age": rng.integers(0, 100, n),
        "division": rng.choice(["D11", "D12", "D14"], n),
        "latitude": rng.uniform(43.62, 43.80, n).round(6),
        "longitude": rng.uniform(-79.55, -79.20, n).round(6),
        "victim_name": "Person " + ids.str[1:],
        "person_id": "P" + pd.Series(rng.integers(0, n // 3 + 1, n)).astype(str),
    })


def _best(fn, repeats: int = REPEATS) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from release.engine import run_release
    from release.io.postgres import DatabaseSource, named_connection, read_records
    from release.io.readers import read_table
    from release.policy.loader import load_policy
    from tests.system import pg
    from tests.system.mini import mini_policy, write_policy

    why = pg.unavailable()
    if why:
        print(f"bench_postgres skipped: {why}")
        return
    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    t0 = time.perf_counter()
    frame = records(N)
    parquet = work / "records.parquet"
    frame.to_parquet(parquet, index=False)
    doc = mini_policy()
    policy = write_policy(work / "policy.yaml", doc)
    server = pg.start()
    try:
        pg.create_database(server, "bench")
        pg.load_records(server, "bench", "public.records", doc["input"]["columns"], frame, shuffle=1)
        cfg = work / "release.toml"
        cfg.write_text(f"[approval]\nrequired = false\n[connections.bench]\nurl = \"{server.url('bench')}\"\n"
                       f"user = \"postgres\"\npassword_env = \"BENCH_PG_PASSWORD\"\n")
        # Test mode only to sign with the public test key (no deployment key here); it changes nothing timed.
        os.environ.update(RELEASE_CONFIG=str(cfg), BENCH_PG_PASSWORD=pg.SUPERUSER_PASSWORD, RELEASE_TEST_MODE="1")
        print(f"set-up (records, Parquet, server, COPY load): {time.perf_counter() - t0:.1f} s")
        pol = load_policy(policy)
        src = DatabaseSource(named_connection("bench", {}), relation="public.records")

        def copy_csv() -> None:
            with server.connect("bench", autocommit=False) as c:
                c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                buf = io.BytesIO()
                with c.cursor().copy("COPY (SELECT * FROM public.records) TO STDOUT (FORMAT csv)") as cp:
                    for chunk in cp:
                        buf.write(chunk)
                names = list(doc["input"]["columns"])
                pacsv.read_csv(pa.BufferReader(buf.getvalue()), read_options=pacsv.ReadOptions(column_names=names),
                               convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}))

        def adbc_fetch() -> None:
            import adbc_driver_postgresql.dbapi as adbc

            with adbc.connect(src.connection.conninfo()) as c, c.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SELECT * FROM public.records")
                cur.fetch_arrow_table()

        reads = {"read: Parquet file (read_table)": _best(lambda: read_table(parquet)),
                 "read: PostgreSQL via ADBC, fetch only (typed Arrow table)": _best(adbc_fetch),
                 "read: PostgreSQL via ADBC (read_records: snapshot, type check, sort, hash)":
                     _best(lambda: read_records(src, pol)),
                 "read: PostgreSQL via psycopg COPY csv + pyarrow parse (not used)": _best(copy_csv)}
        runs = {"release from Parquet": _best(lambda: run_release(policy, parquet, work / "out-parquet")),
                "release from PostgreSQL (--input postgresql:// --table)":
                    _best(lambda: run_release(policy, server.url("bench"), work / "out-pg",
                                              options={"table": "public.records"}))}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{N:,} records, policy tests/system/mini.py (drop, pseudonymize, 2 generalize, records output),"
          f" best of {REPEATS}, {os.cpu_count()} cores")
    print(f"{'what':<82}{'seconds':>9}{'ratio':>9}")
    base = reads["read: Parquet file (read_table)"]
    for k, v in reads.items():
        print(f"{k:<82}{v:>9.2f}{v / base:>8.2f}x")
    base = runs["release from Parquet"]
    for k, v in runs.items():
        print(f"{k:<82}{v:>9.2f}{v / base:>8.2f}x")
    print(f"release ratio PostgreSQL/Parquet: {runs['release from PostgreSQL (--input postgresql:// --table)'] / base:.2f}"
          " (target <= 1.5)")


if __name__ == "__main__":
    main()
