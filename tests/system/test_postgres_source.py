"""Releases from a real PostgreSQL server: byte-identical to Parquet, one snapshot, located errors, nothing spent."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from release.cli import main
from release.dp import ledger as L
from release.engine import run_release
from release.errors import InputError, ReleaseError
from release.synth import synth_use_of_force, write_records
from tests.conftest import DEMO_SOURCES
from tests.system import pg
from tests.system.mini import mini_policy, mini_records, write_policy

ROOT = Path(__file__).resolve().parents[2]
UOF_POLICY = ROOT / "policies" / "use-of-force-by-race.yaml"
READER, READER_PW, ENV = "release_reader", "reader-Secret-93c1", "H15_TEST_PG_PASSWORD"
DB = "records"


@pytest.fixture(scope="module")
def world(pg_server: pg.Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same rows twice: in PostgreSQL (typed columns, shuffled) and in Parquet files (record-id order)."""
    d = tmp_path_factory.mktemp("pgworld")
    pg.create_database(pg_server, DB)
    mini = mini_records(300)
    pg.load_records(pg_server, DB, "public.incidents", mini_policy()["input"]["columns"], mini)
    mini.to_parquet(d / "mini.parquet", index=False)
    uof_doc = yaml.safe_load(UOF_POLICY.read_text())
    uof = synth_use_of_force(400).sort_values("record_id").reset_index(drop=True)
    pg.load_records(pg_server, DB, "public.uof", uof_doc["input"]["columns"], uof)
    write_records(uof, d / "uof.parquet")
    with pg_server.connect(DB) as c:  # one bad row, the last in record-id order: found only after all are read
        c.execute("CREATE TABLE public.uof_bad AS SELECT * FROM public.uof")
        c.execute("UPDATE public.uof_bad SET perceived_race = 'Martian'"
                  " WHERE record_id = (SELECT max(record_id) FROM public.uof_bad)")
        c.execute("CREATE TABLE public.uof_old AS SELECT * FROM public.uof")
        c.execute("UPDATE public.uof_old SET occurrence_date = '0001-01-01'"
                  " WHERE record_id = (SELECT max(record_id) FROM public.uof_old)")
    pg.add_reader(pg_server, DB, READER, READER_PW)
    return {"dir": d, "server": pg_server, "uof_doc": uof_doc}


@pytest.fixture
def deployment(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A release.toml with approval off and the records connection (password from an environment variable)."""
    cfg = tmp_path / "release.toml"
    cfg.write_text("[approval]\nrequired = false\n"
                   f"[connections.records]\nurl = \"{world['server'].url(DB)}\"\nuser = \"{READER}\"\n"
                   f"password_env = \"{ENV}\"\n" + DEMO_SOURCES, encoding="utf-8")
    monkeypatch.setenv("RELEASE_CONFIG", str(cfg))
    monkeypatch.setenv(ENV, READER_PW)
    return cfg


def _files(bundle: Path) -> dict[str, bytes]:
    skip = {"manifest.json", "manifest.sig", "report.json", "report.html", "datapackage.json", "policy.yaml"}
    return {p.name: p.read_bytes() for p in sorted(bundle.iterdir()) if p.is_file() and p.name not in skip}


def _policy(tmp_path: Path, **input_extra: Any) -> Path:
    doc = mini_policy()
    doc["input"].update(input_extra)
    return write_policy(tmp_path / "mini.yaml", doc)


def test_table_query_and_policy_source_publish_the_same_bytes_as_parquet(world: dict[str, Any], deployment: Path,
                                                                          tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    ref = run_release(policy, world["dir"] / "mini.parquet", tmp_path / "a", seed=5)
    url = world["server"].url(DB)
    q = tmp_path / "q.sql"
    q.write_text("SELECT * FROM public.incidents WHERE age >= 0;\n")
    by_table = run_release(policy, url, tmp_path / "b", seed=5, options={"table": "public.incidents"})
    by_query = run_release(policy, url, tmp_path / "c", seed=5, options={"query_file": str(q)})
    src_policy = _policy(tmp_path, source={"connection": "records", "table": "public.incidents"})
    by_policy = run_release(src_policy, None, tmp_path / "d", seed=5)
    want = _files(ref.bundle)  # type: ignore[arg-type]
    assert want and any(n.endswith(".csv") for n in want)
    for got in (by_table, by_query, by_policy):
        assert _files(got.bundle) == want  # type: ignore[arg-type]
    m = json.loads((by_table.bundle / "manifest.json").read_text())  # type: ignore[operator]
    src = m["input_source"]
    assert src["server"] == f"127.0.0.1:{world['server'].port}" and src["database"] == DB
    assert src["relation"] == "public.incidents" and src["rows"] == 300
    assert src["isolation"] == "repeatable read, read only" and src["snapshot_utc"].endswith("Z")
    assert m["input_sha256"] == src["input_sha256"]
    mq = json.loads((by_query.bundle / "manifest.json").read_text())  # type: ignore[operator]
    assert mq["input_source"]["query_sha256"] == __import__("hashlib").sha256(q.read_bytes()).hexdigest()
    # Same rows read by another route (the query, the policy's source): the same input hash.
    mp = json.loads((by_policy.bundle / "manifest.json").read_text())  # type: ignore[operator]
    assert mq["input_sha256"] == mp["input_sha256"] == m["input_sha256"]
    for man in (m, mq, mp):
        text = json.dumps(man)
        assert READER_PW not in text and READER not in text and str(tmp_path) not in text


def test_input_hash_follows_the_rows_not_their_physical_order(world: dict[str, Any], deployment: Path,
                                                              tmp_path: Path) -> None:
    from release.io.postgres import DatabaseSource, named_connection, read_records
    from release.policy.loader import load_policy

    policy, conn = load_policy(_policy(tmp_path)), named_connection("records", {})

    def read(rel: str) -> Any:
        return read_records(DatabaseSource(conn, relation=rel), policy)

    first = read("public.incidents")
    with world["server"].connect(DB) as c:  # the same rows in another physical order
        c.execute("CREATE TABLE public.incidents2 AS SELECT * FROM public.incidents ORDER BY random()")
        c.execute(f'GRANT SELECT ON public.incidents2 TO "{READER}"')
    try:
        again = read("public.incidents2")
        with world["server"].connect(DB) as c:
            c.execute("UPDATE public.incidents2 SET age = age + 1 WHERE record_id = 'R000007'")
        changed = read("public.incidents2")
    finally:
        with world["server"].connect(DB) as c:
            c.execute("DROP TABLE public.incidents2")
    assert first.sha256 == again.sha256 != changed.sha256
    assert first.frame.equals(again.frame) and list(first.frame["record_id"]) == sorted(first.frame["record_id"])
    assert first.manifest["snapshot_utc"] <= changed.manifest["snapshot_utc"]


def test_dp_release_from_postgres_has_the_parquet_key_grid_and_scale(world: dict[str, Any], deployment: Path,
                                                                     tmp_path: Path) -> None:
    ref = run_release(UOF_POLICY, world["dir"] / "uof.parquet", tmp_path / "a", seed=3,
                      options={"ledger": str(tmp_path / "l1.sqlite")})
    got = run_release(UOF_POLICY, world["server"].url(DB), tmp_path / "b", seed=3,
                      options={"ledger": str(tmp_path / "l2.sqlite"), "table": "public.uof"})
    for a, b in zip(ref.report["outputs"], got.report["outputs"], strict=True):
        fa, fb = a["figures"]["dp"], b["figures"]["dp"]
        assert (fa["scale"], fa["cells"], fa["epsilon"]) == (fb["scale"], fb["cells"], fb["epsilon"])
    for name in (n for n in _files(ref.bundle) if n.endswith(".csv")):  # type: ignore[arg-type]
        ka = pd.read_csv(ref.bundle / name)  # type: ignore[operator]
        kb = pd.read_csv(got.bundle / name)  # type: ignore[operator]
        keys = [c for c in ka.columns if c != "count"]
        assert ka[keys].equals(kb[keys]) and len(ka) > 0


def _spent(ledger: Path) -> int:
    return len(L.history(ledger)) if ledger.exists() else 0


def _terminate_when_reading(server: pg.Server, stop: threading.Event) -> None:
    with server.connect() as c:
        while not stop.is_set():
            r = c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'release'"
                          " AND state = 'active' AND query LIKE '%pg_sleep%'").fetchall()
            if r:
                return
            time.sleep(0.05)


BAD_CASES = {
    "wrong password": ({"env": "wrong-password-77"}, {"table": "public.uof"}, "password authentication failed"),
    "missing table": ({}, {"table": "public.no_such_table"}, "does not exist"),
    "undeclared column": ({}, {"query": "SELECT *, 1 AS shoe_size FROM public.uof"}, "unexpected-column"),
    "type mismatch": ({}, {"query": "SELECT record_id, incident_id, person_id, subject_name, subject_dob,"
                       " occurrence_date::text AS occurrence_date, perceived_race, gender, age_group, division,"
                       " force_type FROM public.uof"}, "occurrence_date"),
    "bad row last": ({}, {"table": "public.uof_bad"}, "perceived_race"),
    "date pandas cannot hold": ({}, {"table": "public.uof_old"}, "timestamp-range"),
    "dropped mid-read": ({}, {"query": "SELECT u.* FROM public.uof u CROSS JOIN pg_sleep(4)"}, "terminat"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_source_exits_2_names_the_source_never_the_password_and_spends_nothing(
        case: str, world: dict[str, Any], deployment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, args, reason = BAD_CASES[case]
    if "env" in env:
        monkeypatch.setenv(ENV, env["env"])
    cols = set(world["uof_doc"]["input"]["columns"])
    assert "shoe_size" not in cols
    url = world["server"].url(DB, user=READER)
    argv = ["run", str(UOF_POLICY), "--input", url, "--out", str(tmp_path / "out"), "--seed", "1",
            "--ledger", str(tmp_path / "ledger.sqlite")]
    if "table" in args:
        argv += ["--table", args["table"]]
    else:
        (tmp_path / "q.sql").write_text(args["query"])
        argv += ["--query", str(tmp_path / "q.sql")]
    stop = threading.Event()
    killer = threading.Thread(target=_terminate_when_reading, args=(world["server"], stop), daemon=True)
    if case == "dropped mid-read":
        killer.start()
    try:
        r = CliRunner().invoke(main, argv, catch_exceptions=False)
    finally:
        stop.set()
    assert r.exit_code == 2, r.output
    assert f"postgresql://127.0.0.1:{world['server'].port}/{DB}" in r.output
    assert reason in r.output, r.output
    for secret in (READER_PW, "wrong-password-77", pg.SUPERUSER_PASSWORD, READER):
        assert secret not in r.output
    assert _spent(tmp_path / "ledger.sqlite") == 0
    assert not (tmp_path / "out" / "use-of-force-by-race").exists() or \
        not any((tmp_path / "out" / "use-of-force-by-race").iterdir())


def test_password_in_url_is_refused_without_echoing_it(world: dict[str, Any], deployment: Path,
                                                       tmp_path: Path) -> None:
    url = f"postgresql://{READER}:{READER_PW}@127.0.0.1:{world['server'].port}/{DB}"
    with pytest.raises(ReleaseError) as e:
        run_release(_policy(tmp_path), url, tmp_path / "o", options={"table": "public.incidents"})
    assert e.value.exit_code == 2 and "carries a password" in e.value.message
    assert READER_PW not in e.value.render()


def test_password_file_and_read_only_snapshot(world: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from release.io.postgres import named_connection, read_records

    (tmp_path / "secret").write_text(READER_PW + "\n")
    cfg = tmp_path / "release.toml"
    cfg.write_text(f"[approval]\nrequired = false\n[connections.records]\nurl = \"{world['server'].url(DB)}\"\n"
                   f"user = \"{READER}\"\npassword_file = \"secret\"\n" + DEMO_SOURCES, encoding="utf-8")
    monkeypatch.setenv("RELEASE_CONFIG", str(cfg))
    from release.io.postgres import DatabaseSource
    from release.policy.loader import load_policy

    conn = named_connection("records", {})
    assert conn.password == READER_PW and READER_PW not in repr(conn)
    # A query that tries to write inside the read transaction is refused by the server (read only).
    src = DatabaseSource(conn, query="SELECT * FROM public.incidents FOR UPDATE")
    with pytest.raises(InputError) as e:
        read_records(src, load_policy(_policy(tmp_path)))
    assert "read-only transaction" in e.value.message


def test_pgpass_file_gives_the_password(world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from release.io.postgres import DatabaseSource, named_connection, read_records
    from release.policy.loader import load_policy

    server = world["server"]
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{server.host}:{server.port}:{DB}:{READER}:{READER_PW}\n")
    passfile.chmod(0o600)  # libpq ignores a pgpass file others can read
    cfg = tmp_path / "release.toml"
    cfg.write_text(f"[approval]\nrequired = false\n[connections.records]\nurl = \"{server.url(DB)}\"\n"
                   f"user = \"{READER}\"\npassfile = \"pgpass\"\n" + DEMO_SOURCES, encoding="utf-8")
    monkeypatch.setenv("RELEASE_CONFIG", str(cfg))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    conn = named_connection("records", {})
    assert conn.password is None and conn.passfile == str(passfile)
    got = read_records(DatabaseSource(conn, relation="public.incidents"), load_policy(_policy(tmp_path)))
    assert got.manifest["rows"] == 300
