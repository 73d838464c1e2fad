"""A throwaway PostgreSQL 15 server for the tests: initdb in a temp folder, a free local port, run as `postgres`.

The server refuses to run as root (which CI is), so every server command runs as the `postgres` user
through `runuser`. Password authentication (scram-sha-256) is on, so a wrong password is a real
authentication failure. Tests skip, saying why, when the binaries or the user are absent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BIN = Path(os.environ.get("RELEASE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "test-superuser-pw-6d1f"


def unavailable() -> str | None:
    """Why no test server can start here (None: it can)."""
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"PostgreSQL binaries not found in {BIN} (apt-get install postgresql, or set RELEASE_TEST_PG_BIN)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run the server as (the server refuses to run as root)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser not found (needed to start the server as the postgres user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: connect as `postgres` with SUPERUSER_PASSWORD on 127.0.0.1:port."""

    folder: Path
    port: int

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, db: str = "postgres", user: str | None = None) -> str:
        who = f"{user}@" if user else ""
        return f"postgresql://{who}{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres", user: str = "postgres", password: str = SUPERUSER_PASSWORD,
                autocommit: bool = True):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, dbname=db, user=user, password=password,
                               autocommit=autocommit)

    def stop(self) -> None:
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"],
                     check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_postgres(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)


def start() -> Server:
    """initdb + pg_ctl start in a fresh temp folder; fsync off (a test server keeps nothing)."""
    folder = Path(tempfile.mkdtemp(prefix="release-pg-"))
    os.chmod(folder, 0o755)
    pw = pwd.getpwnam("postgres")
    (folder / "pw").write_text(SUPERUSER_PASSWORD)
    if os.geteuid() == 0:
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        os.chown(folder / "pw", pw.pw_uid, pw.pw_gid)
    data = folder / "data"
    _as_postgres([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={folder / 'pw'}", "-E", "UTF8", "--no-sync", "--locale=C"])
    port = _free_port()
    opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=40 -c shared_buffers=64MB")
    r = _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w",
                      "-t", "60", "start"], check=False)
    if r.returncode != 0:
        log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"test PostgreSQL did not start: {r.stderr[-500:]} {log[-1000:]}")
    return Server(folder=folder, port=port)


PG_TYPES = {"string": "text", "category": "text", "integer": "bigint", "float": "double precision",
            "boolean": "boolean", "datetime": "timestamp", "date": "date"}


def create_database(server: Server, db: str) -> None:
    with server.connect() as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}"')


def load_records(server: Server, db: str, relation: str, columns: dict[str, dict], frame, shuffle: int = 7) -> None:  # type: ignore[no-untyped-def]
    """CREATE TABLE from a policy's input columns (declared types -> PostgreSQL types) and COPY `frame` into it,
    rows shuffled so the release has to order them itself."""
    import io

    ddl = ", ".join(f'"{c}" {PG_TYPES[spec["type"]]}' for c, spec in columns.items())
    frame = frame[list(columns)].sample(frac=1.0, random_state=shuffle)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, na_rep="")
    with server.connect(db) as c:
        c.execute(f"DROP TABLE IF EXISTS {relation}")
        c.execute(f"CREATE TABLE {relation} ({ddl})")
        with c.cursor().copy(f"COPY {relation} FROM STDIN (FORMAT csv)") as cp:
            cp.write(buf.getvalue())
        c.execute(f"ANALYZE {relation}")


def add_reader(server: Server, db: str, role: str, password: str) -> None:
    """The docs/postgres.md recipe: a login role that can only read (SELECT on the schema's tables)."""
    with server.connect(db) as c:
        exists = c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            c.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"
                      " NOSUPERUSER NOCREATEDB NOCREATEROLE")
        c.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
        c.execute(f'GRANT CONNECT ON DATABASE "{db}" TO "{role}"')
        c.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        c.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
