"""The privacy-budget ledger on PostgreSQL, for deployments where several machines run releases of one source.

Same semantics and entry format as the SQLite ledger (release/dp/ledger.py on the chained-ledger
branch): spends keyed by (registered source, privacy-unit kind), one entry per release holding its
sequence number, the previous entry's hash, the release id, dataset, source, unit, epsilon / rho /
delta, time and per-output detail, and its own hash over all of these; the first entry chains from
a genesis hash derived from the ledger's random id. A reservation is one transaction that first
takes a row lock (`SELECT ... FOR UPDATE` on the ledger's id row), so every reservation on every
machine is serialized: the chain is verified, the caps are checked against what is committed, the
entry is appended, and the lock is released by COMMIT. Entries are never updated or deleted
(never refunded); the primary key on `seq` and the unique `prev_hash` refuse a forked chain even
if a client skipped the lock.

Configuration (release.toml): `[ledger] url = "postgresql://HOST:PORT/DB"`, with `user` and one of
`password_env`, `password_file`, `passfile`, as for `[connections.NAME]` (docs/postgres.md).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

# One entry format for both backends: an entry recorded in a manifest verifies whichever wrote it.
from release.dp.ledger import (
    ENTRY_FIELDS,
    MEASURES,
    Caps,
    ChainBroken,
    _totals,
    cap_problems,
    chain_problems,
    entry_hash,
    genesis_hash,
    missing_spends,
)
from release.errors import BlockedError, UsageError

if TYPE_CHECKING:
    from release.io.postgres import Connection

SCHEMA_VERSION = 2
_DDL = """
CREATE TABLE IF NOT EXISTS release_ledger_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS release_ledger_entries (
    seq bigint PRIMARY KEY,
    prev_hash text NOT NULL UNIQUE,
    release_id text NOT NULL,
    dataset text NOT NULL,
    source text NOT NULL,
    unit text NOT NULL,
    epsilon double precision NOT NULL,
    rho double precision NOT NULL,
    delta double precision NOT NULL,
    created_utc text NOT NULL,
    detail text NOT NULL,
    hash text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS release_ledger_by_key ON release_ledger_entries (source, unit, created_utc);
CREATE TABLE IF NOT EXISTS release_ledger_limits (
    source text NOT NULL,
    unit text NOT NULL,
    caps_json text NOT NULL,
    PRIMARY KEY (source, unit)
);
"""
# Any fixed number: only ledger set-up takes this advisory lock (concurrent CREATE IF NOT EXISTS can collide).
_SETUP_LOCK = 0x7265_6C65


def is_url(value: Any) -> bool:
    from release.io.postgres import is_database_url

    return is_database_url(value)


def connection_of(table: dict[str, Any], config: Any = None) -> Connection:
    """The ledger's connection from a release.toml `[ledger]` table (url, user, password_env | password_file |
    passfile); the same keys and rules as `[connections.NAME]`."""
    from release.io.postgres import _connection

    return _connection(config, "ledger", {k: v for k, v in table.items() if k != "path"}, section="ledger")


@contextmanager
def _connect(conn: Connection) -> Iterator[Any]:
    import psycopg

    try:
        con = psycopg.connect(conn.conninfo(), autocommit=True)
    except psycopg.Error as e:
        raise UsageError(f"budget ledger {conn.display}: cannot connect ({conn.scrub(str(e).strip())[:300]})"
                         ) from None
    try:
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            con.execute(_DDL)
            con.execute("INSERT INTO release_ledger_meta VALUES ('ledger_id', %s), ('schema_version', %s)"
                        " ON CONFLICT (key) DO NOTHING", (secrets.token_hex(16), str(SCHEMA_VERSION)))
        yield con
    except psycopg.Error as e:
        raise UsageError(f"budget ledger {conn.display}: {conn.scrub(str(e).strip())[:300]}; no budget was spent"
                         ) from None
    finally:
        con.close()


def _entries(con: Any) -> list[dict[str, Any]]:
    cols = [*ENTRY_FIELDS, "hash"]
    out = []
    for r in con.execute(f"SELECT {', '.join(cols)} FROM release_ledger_entries ORDER BY seq").fetchall():
        e = dict(zip(cols, r, strict=True))
        try:
            e["detail"] = json.loads(e["detail"])
        except (TypeError, ValueError):
            e["detail"] = {"unreadable": str(e["detail"])[:40]}
        out.append(e)
    return out


def _ledger_id(con: Any) -> str:
    return str(con.execute("SELECT value FROM release_ledger_meta WHERE key = 'ledger_id'").fetchone()[0])


def reserve(conn: Connection, *, source: str, unit: str, dataset: str, release_id: str,
            spends: list[dict[str, Any]], caps: Caps, now: datetime, published: list[dict[str, Any]] | None = None,
            migrate_as: Any = None, reset_hint: str = "") -> dict[str, Any]:
    """Append this release's spend to the chain, or nothing: raise BlockedError if a cap would be passed, the
    chain is broken, or a published bundle records a spend the ledger does not hold.

    The SQLite ledger's signature; `migrate_as` is accepted and unused (no per-dataset PostgreSQL ledger
    ever existed to migrate from). One READ COMMITTED transaction that starts by locking the ledger's id row: every later statement
    sees every reservation committed before the lock was granted, and no other reservation can
    commit until this one does, so concurrent releases on any number of machines never pass a cap.
    """
    asked = {m: float(sum(s.get(m) or 0.0 for s in spends)) for m in MEASURES}
    since = (now - timedelta(days=caps.period_days)).isoformat(timespec="microseconds")
    stamp = now.isoformat(timespec="microseconds")
    where = conn.display
    with _connect(conn) as con, con.transaction():
        lid = str(con.execute("SELECT value FROM release_ledger_meta WHERE key = 'ledger_id' FOR UPDATE"
                              ).fetchone()[0])
        entries = _entries(con)
        problems = chain_problems(entries, lid)
        if problems:
            raise ChainBroken(f"the budget ledger {where} is not intact (its hash chain is broken): nothing was"
                              " published and no budget was spent", details=[
                                  *problems, "restore the ledger from its backup; a ledger is never edited by hand"])
        missing = missing_spends(entries, lid, published or [])
        if missing:
            raise BlockedError(f"{len(missing)} published bundle(s) record a spend the budget ledger {where} does not"
                               " hold (a deleted, truncated or swapped ledger would reset the budget): nothing was"
                               " published and no budget was spent", details=missing[:10])
        before = _totals(entries, source, unit, since)
        problems = cap_problems(before, asked, caps)
        if problems:
            raise BlockedError(f"privacy budget of source {source} (privacy unit {unit}) would pass the {problems[0]};"
                               " nothing was published and no budget was spent",
                               details=[*problems[1:], f"ledger: {where}"] + ([reset_hint] if reset_hint else []))
        head = entries[-1]["hash"] if entries else genesis_hash(lid)
        entry: dict[str, Any] = {"seq": len(entries) + 1, "prev_hash": head, "release_id": release_id,
                                 "dataset": dataset, "source": source, "unit": unit, **asked, "created_utc": stamp,
                                 "detail": {"outputs": spends}}
        entry["hash"] = entry_hash(entry)
        con.execute(f"INSERT INTO release_ledger_entries ({', '.join(ENTRY_FIELDS)}, hash)"
                    f" VALUES ({', '.join(['%s'] * 12)})",
                    [*(json.dumps(entry[k], sort_keys=True, separators=(",", ":")) if k == "detail" else entry[k]
                       for k in ENTRY_FIELDS), entry["hash"]])
        con.execute("INSERT INTO release_ledger_limits VALUES (%s, %s, %s) ON CONFLICT (source, unit)"
                    " DO UPDATE SET caps_json = EXCLUDED.caps_json", (source, unit, json.dumps(caps.to_json())))
    after = {m: before[m] + asked[m] for m in MEASURES}
    # The server and database only: never the user or the password.
    return {"ledger": where, "ledger_id": lid, "source": source, "unit": unit, "dataset": dataset,
            "release_id": release_id, "period_days": caps.period_days, "caps": caps.to_json(), "asked": asked,
            "spent_in_period_before": before, "spent_in_period_after": after,
            "left_in_period": {m: (None if caps.per_period.get(m) is None else
                                   max(float(caps.per_period[m]) - after[m], 0.0))  # type: ignore[arg-type]
                               for m in MEASURES},
            "spends": spends, "entry": entry, "chain_head_seen": head}


def read(conn: Connection) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(ledger id, entries, chain problems), read in one REPEATABLE READ snapshot."""
    with _connect(conn) as con:
        con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            lid = _ledger_id(con)
            entries = _entries(con)
        finally:
            con.execute("ROLLBACK")
    return lid, entries, chain_problems(entries, lid)


def history(conn: Connection, source: str | None = None) -> list[dict[str, Any]]:
    """Every recorded spend (oldest first), optionally of one source."""
    _, entries, _ = read(conn)
    return [e for e in entries if source is None or e["source"] == source]
