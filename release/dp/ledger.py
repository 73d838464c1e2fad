"""The privacy-budget ledger: DP spends per (source, privacy unit) as a hash chain, reserved atomically in SQLite.

Each release appends one entry: its sequence number, the previous entry's hash, the release id,
dataset, source, unit kind, epsilon / rho / delta, time and per-output detail, and its own hash
over all of these. The first entry chains from a genesis hash derived from the ledger's random id.
An edited, reordered or deleted entry breaks the chain; a deleted, truncated or swapped ledger
no longer holds the entries (and ledger id) that the published bundles recorded. Both refuse
the next run (exit 1). The check, the reservation and the append are one `BEGIN IMMEDIATE`
transaction, so concurrent releases are serialized and never pass a cap together.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from release.errors import BlockedError, UsageError

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    release_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    source TEXT NOT NULL,
    unit TEXT NOT NULL,
    epsilon REAL NOT NULL,
    rho REAL NOT NULL,
    delta REAL NOT NULL,
    created_utc TEXT NOT NULL,
    detail TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (source, unit, created_utc);
CREATE TABLE IF NOT EXISTS limits (
    source TEXT NOT NULL,
    unit TEXT NOT NULL,
    caps_json TEXT NOT NULL,
    PRIMARY KEY (source, unit)
);
"""
MEASURES = ("epsilon", "rho", "delta")
ENTRY_FIELDS = ("seq", "prev_hash", "release_id", "dataset", "source", "unit", "epsilon", "rho", "delta",
                "created_utc", "detail")
# Sums of floats drift by ulps; a spend that only passes a cap by rounding is not a breach.
_SLACK = 1e-9


@dataclass(frozen=True)
class Caps:
    """Caps a reservation is checked against (None: no cap)."""

    per_release: dict[str, float | None]
    per_period: dict[str, float | None]
    period_days: int

    def to_json(self) -> dict[str, Any]:
        return {"per_release": self.per_release, "per_period": self.per_period, "period_days": self.period_days}


def genesis_hash(ledger_id: str) -> str:
    """The `prev_hash` of a ledger's first entry: a fresh ledger starts a different chain."""
    return hashlib.sha256(b"release-ledger-genesis\0" + ledger_id.encode()).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of an entry's fields (everything but its own hash)."""
    doc = {k: entry.get(k) for k in ENTRY_FIELDS}
    for m in MEASURES:
        doc[m] = float(doc[m] or 0.0)
    doc["seq"] = int(doc["seq"] or 0)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


class ChainBroken(BlockedError):
    """The ledger's hash chain does not verify (an entry edited, removed or reordered)."""


def _tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _connect(path: Path, create: bool = True) -> sqlite3.Connection:
    if not create and not path.is_file():
        raise UsageError(f"{path}: no budget ledger at this path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so check-and-insert is one write transaction.
        con = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 120000")
        con.executescript(_SCHEMA)
        con.execute("INSERT OR IGNORE INTO meta VALUES ('ledger_id', ?)", (secrets.token_hex(16),))
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    except sqlite3.Error as e:
        raise UsageError(f"{path}: cannot open the budget ledger ({e})") from e
    return con


def ledger_id(con: sqlite3.Connection) -> str:
    return str(con.execute("SELECT value FROM meta WHERE key='ledger_id'").fetchone()[0])


def legacy_datasets(con: sqlite3.Connection) -> list[str] | None:
    """Datasets of an old (per-dataset, unchained) ledger not yet migrated; None when there is none."""
    if "spends" not in _tables(con):
        return None
    return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM spends ORDER BY dataset")]


def _entries(con: sqlite3.Connection) -> list[dict[str, Any]]:
    cols = [*ENTRY_FIELDS, "hash"]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM entries ORDER BY seq").fetchall()
    out = []
    for r in rows:
        e = dict(zip(cols, r, strict=True))
        try:
            e["detail"] = json.loads(e["detail"])
        except (TypeError, ValueError):
            e["detail"] = {"unreadable": str(e["detail"])[:40]}
        out.append(e)
    return out


def chain_problems(entries: list[dict[str, Any]], lid: str) -> list[str]:
    """Every entry's hash recomputed, every link and sequence number followed (any backend's entries)."""
    problems: list[str] = []
    prev = genesis_hash(lid)
    for i, e in enumerate(entries, start=1):
        if e["seq"] != i:
            problems.append(f"entry {e['seq']}: expected sequence number {i} (an entry was removed)")
        if e["prev_hash"] != prev:
            problems.append(f"entry {e['seq']}: its previous hash is not the hash of entry {i - 1}"
                            " (an entry was removed, replaced or reordered)")
        if entry_hash(e) != e["hash"]:
            problems.append(f"entry {e['seq']}: its content does not match its hash (the entry was edited)")
        prev = e["hash"]
        if len(problems) >= 5:
            break
    return problems


def verify_chain(con: sqlite3.Connection) -> tuple[list[dict[str, Any]], list[str]]:
    """(entries, problems) of the SQLite ledger's chain."""
    entries = _entries(con)
    return entries, chain_problems(entries, ledger_id(con))


def _insert(con: sqlite3.Connection, entry: dict[str, Any]) -> None:
    con.execute(f"INSERT INTO entries ({', '.join(ENTRY_FIELDS)}, hash) VALUES ({', '.join('?' * 12)})",
                [*(json.dumps(entry[k], sort_keys=True, separators=(",", ":")) if k == "detail" else entry[k]
                   for k in ENTRY_FIELDS), entry["hash"]])


def _append(con: sqlite3.Connection, entries: list[dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
    prev = entries[-1]["hash"] if entries else genesis_hash(ledger_id(con))
    entry = {"seq": len(entries) + 1, "prev_hash": prev, **fields}
    for m in MEASURES:
        entry[m] = float(entry.get(m) or 0.0)
    entry["hash"] = entry_hash(entry)
    _insert(con, entry)
    entries.append(entry)
    return entry


def migrate(path: Path, mapping: dict[str, tuple[str, str]]) -> int:
    """Re-key an old per-dataset ledger by (source, unit) and chain it; returns the entries written.

    `mapping` gives every old dataset its (source, unit). The old rows are kept, renamed to
    `spends_v1`, for audit; one chained entry is written per old release.
    """
    with closing(_connect(path, create=False)) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            n = _migrate_in(con, path, mapping)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    return n


def _migrate_in(con: sqlite3.Connection, path: Path, mapping: dict[str, tuple[str, str]]) -> int:
    old = legacy_datasets(con)
    if old is None:
        return 0
    missing = [d for d in old if d not in mapping]
    if missing:
        raise UsageError(f"{path}: the old ledger holds spends of dataset(s) {missing} that no source is given for;"
                         " nothing was migrated")
    entries, problems = verify_chain(con)
    if problems:
        raise ChainBroken(f"{path}: the budget ledger's hash chain is broken; nothing was migrated",
                          details=problems)
    rows = con.execute("SELECT release_id, dataset, output, mechanism, epsilon, rho, delta, created_utc FROM spends"
                       " ORDER BY id").fetchall()
    by_release: dict[str, dict[str, Any]] = {}
    for rid, ds, output, mech, eps, rho, delta, t in rows:
        e = by_release.setdefault(rid, {"release_id": rid, "dataset": ds, "source": mapping[ds][0],
                                        "unit": mapping[ds][1], "epsilon": 0.0, "rho": 0.0, "delta": 0.0,
                                        "created_utc": t, "detail": {"outputs": [], "migrated_from": "v1"}})
        for m, v in zip(MEASURES, (eps, rho, delta), strict=True):
            e[m] += float(v or 0.0)
        e["detail"]["outputs"].append({"output": output, "mechanism": mech, "epsilon": eps, "rho": rho,
                                       "delta": delta})
    for e in by_release.values():
        _append(con, entries, e)
    con.execute("ALTER TABLE spends RENAME TO spends_v1")
    if "caps" in _tables(con):
        con.execute("ALTER TABLE caps RENAME TO caps_v1")
    return len(by_release)


def _refuse_legacy(path: Path, old: list[str]) -> UsageError:
    maps = " ".join(f"--map {d}=SOURCE" for d in old[:5])
    return UsageError(f"{path}: an old budget ledger (spends keyed by dataset, not chained) holding dataset(s)"
                      f" {old}: it cannot be re-keyed by source automatically", details=[
                          f"migrate it once: `release ledger migrate --ledger {path} {maps}` (SOURCE as registered"
                          " in release.toml [sources]); its spends keep counting against the source's budget"])


def _totals(entries: list[dict[str, Any]], source: str, unit: str, since: str | None) -> dict[str, float]:
    sel = [e for e in entries if e["source"] == source and e["unit"] == unit
           and (since is None or e["created_utc"] > since)]
    return {m: float(sum(e[m] for e in sel)) for m in MEASURES}


def cap_problems(before: dict[str, float], asked: dict[str, float], caps: Caps) -> list[str]:
    """The caps this release's spend would pass, given what the period already spent (empty: it fits)."""
    problems = []
    for m in MEASURES:
        cap = caps.per_release.get(m)
        if cap is not None and asked[m] > cap * (1 + _SLACK):
            problems.append(f"{m}_per_release cap {cap:g}: this release asks {asked[m]:g}")
        cap = caps.per_period.get(m)
        if cap is not None and before[m] + asked[m] > cap * (1 + _SLACK):
            problems.append(f"{m}_per_period cap {cap:g} ({caps.period_days} days): {before[m]:g} already"
                            f" spent, this release asks {asked[m]:g}, {max(cap - before[m], 0):g} left")
    return problems


def missing_spends(entries: list[dict[str, Any]], lid: str, published: list[dict[str, Any]]) -> list[str]:
    """Published bundles whose recorded spend this ledger does not hold (deleted, truncated or swapped)."""
    by_hash = {e["hash"] for e in entries}
    releases = {e["release_id"] for e in entries}
    out = []
    for p in published:
        e = p.get("entry")
        where = p.get("bundle", "?")
        if isinstance(e, dict):
            if p.get("ledger_id") not in (None, lid):
                out.append(f"{where}: recorded by ledger {p.get('ledger_id')}, this ledger is {lid} (swapped or"
                           " recreated)")
            elif e.get("hash") not in by_hash:
                out.append(f"{where}: its spend (entry {e.get('seq')}, hash {str(e.get('hash'))[:12]}…) is not in"
                           " the ledger")
        elif p.get("release_id") not in releases:
            out.append(f"{where}: its spend (release {p.get('release_id')}) is not in the ledger")
    return out


def reserve(path: Path, *, source: str, unit: str, dataset: str, release_id: str, spends: list[dict[str, Any]],
            caps: Caps, now: datetime, published: list[dict[str, Any]] | None = None,
            migrate_as: dict[str, tuple[str, str]] | None = None, reset_hint: str = "") -> dict[str, Any]:
    """Append this release's spend to the chain, or nothing: raise BlockedError if a cap would be passed,
    the chain is broken, or a published bundle records a spend the ledger does not hold.

    Everything happens in ONE `BEGIN IMMEDIATE` transaction, so concurrent releases are serialized
    by SQLite's write lock and the period total never passes its cap.
    """
    if not isinstance(path, Path):  # [ledger] url: the PostgreSQL backend, same semantics (release/dp/ledger_pg.py)
        from release.dp import ledger_pg

        return ledger_pg.reserve(path, source=source, unit=unit, dataset=dataset, release_id=release_id,
                                 spends=spends, caps=caps, now=now, published=published, reset_hint=reset_hint)
    asked = {m: float(sum(s.get(m) or 0.0 for s in spends)) for m in MEASURES}
    since = (now - timedelta(days=caps.period_days)).isoformat(timespec="microseconds")
    stamp = now.isoformat(timespec="microseconds")
    with closing(_connect(path)) as con:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise UsageError(f"{path}: cannot lock the budget ledger ({e})") from e
        try:
            old = legacy_datasets(con)
            if old is not None:
                # Unambiguous only when every old spend is this dataset's: then it re-keys to this run's source.
                if not migrate_as or set(old) - set(migrate_as):
                    raise _refuse_legacy(path, old)
                _migrate_in(con, path, migrate_as)
            entries, problems = verify_chain(con)
            if problems:
                raise ChainBroken(f"the budget ledger {path.name} is not intact (its hash chain is broken): nothing"
                                  " was published and no budget was spent", details=[
                                      *problems, f"ledger: {path}", "restore the ledger from its backup; a ledger is"
                                      " never edited by hand"])
            lid = ledger_id(con)
            missing = missing_spends(entries, lid, published or [])
            if missing:
                raise BlockedError(f"{len(missing)} published bundle(s) record a spend the budget ledger {path.name}"
                                   " does not hold (a deleted, truncated or swapped ledger would reset the budget):"
                                   " nothing was published and no budget was spent",
                                   details=[*missing[:10], f"ledger: {path}", "restore the deployment's ledger"])
            before = _totals(entries, source, unit, since)
            problems = cap_problems(before, asked, caps)
            if problems:
                raise BlockedError(
                    f"privacy budget of source {source} (privacy unit {unit}) would pass the {problems[0]};"
                    " nothing was published and no budget was spent",
                    details=[*problems[1:], f"ledger: {path}"] + ([reset_hint] if reset_hint else []))
            head = entries[-1]["hash"] if entries else genesis_hash(lid)
            entry = _append(con, entries, {"release_id": release_id, "dataset": dataset, "source": source,
                                           "unit": unit, **asked, "created_utc": stamp,
                                           "detail": {"outputs": spends}})
            con.execute("INSERT OR REPLACE INTO limits VALUES (?,?,?)",
                        (source, unit, json.dumps(caps.to_json())))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    after = {m: before[m] + asked[m] for m in MEASURES}
    # Only the file name: the internal folder layout is not for publication.
    return {"ledger": path.name, "ledger_id": lid, "source": source, "unit": unit, "dataset": dataset,
            "release_id": release_id, "period_days": caps.period_days, "caps": caps.to_json(), "asked": asked,
            "spent_in_period_before": before, "spent_in_period_after": after,
            "left_in_period": {m: (None if caps.per_period.get(m) is None else
                                   max(float(caps.per_period[m]) - after[m], 0.0))  # type: ignore[arg-type]
                               for m in MEASURES},
            "spends": spends, "entry": entry, "chain_head_seen": head}


def read(path: Path) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(ledger id, entries, chain problems) of an existing ledger, read-only in effect."""
    if not isinstance(path, Path):  # [ledger] url
        from release.dp import ledger_pg

        return ledger_pg.read(path)
    with closing(_connect(path, create=False)) as con:
        old = legacy_datasets(con)
        if old is not None and not con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]:
            raise _refuse_legacy(path, old)
        entries, problems = verify_chain(con)
        return ledger_id(con), entries, problems


def history(path: Path, source: str | None = None) -> list[dict[str, Any]]:
    """Every recorded spend (oldest first), optionally of one source."""
    _, entries, _ = read(path)
    return [e for e in entries if source is None or e["source"] == source]


def summary(path: Path, now: datetime, source: str | None = None) -> list[dict[str, Any]]:
    """Per source and privacy unit: totals, what the period caps leave, number of releases."""
    with closing(_connect(path, create=False)) as con:
        limits = con.execute("SELECT source, unit, caps_json FROM limits ORDER BY source, unit").fetchall()
        entries = _entries(con)
    out = []
    for src, unit, caps_json in limits:
        if source and src != source:
            continue
        caps = json.loads(caps_json)
        since = (now - timedelta(days=caps["period_days"])).isoformat(timespec="microseconds")
        period = _totals(entries, src, unit, since)
        total = _totals(entries, src, unit, None)
        n = len({e["release_id"] for e in entries if e["source"] == src and e["unit"] == unit})
        left = {m: (None if caps["per_period"].get(m) is None else max(caps["per_period"][m] - period[m], 0.0))
                for m in MEASURES}
        out.append({"source": src, "unit": unit, "releases": n, "spent_total": total, "spent_in_period": period,
                    "period_days": caps["period_days"], "caps": caps, "left_in_period": left})
    return out
