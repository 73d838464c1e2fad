"""The privacy-budget ledger: every DP spend per dataset and privacy unit, reserved atomically in SQLite."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from release.errors import BlockedError, UsageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    privacy_unit TEXT NOT NULL,
    release_id TEXT NOT NULL,
    output TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    epsilon REAL NOT NULL DEFAULT 0,
    rho REAL NOT NULL DEFAULT 0,
    delta REAL NOT NULL DEFAULT 0,
    created_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spends_by_dataset ON spends (dataset, privacy_unit, created_utc);
CREATE TABLE IF NOT EXISTS caps (
    dataset TEXT NOT NULL,
    privacy_unit TEXT NOT NULL,
    caps_json TEXT NOT NULL,
    PRIMARY KEY (dataset, privacy_unit)
);
"""
MEASURES = ("epsilon", "rho", "delta")
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


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so check-and-insert is one write transaction.
        con = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 120000")
        con.executescript(_SCHEMA)
    except sqlite3.Error as e:
        raise UsageError(f"{path}: cannot open the budget ledger ({e})") from e
    return con


def _totals(con: sqlite3.Connection, dataset: str, unit: str, since: str | None) -> dict[str, float]:
    q = "SELECT COALESCE(SUM(epsilon),0), COALESCE(SUM(rho),0), COALESCE(SUM(delta),0) FROM spends" \
        " WHERE dataset = ? AND privacy_unit = ?"
    args: list[Any] = [dataset, unit]
    if since is not None:
        q += " AND created_utc > ?"
        args.append(since)
    row = con.execute(q, args).fetchone()
    return dict(zip(MEASURES, (float(x) for x in row), strict=True))


def reserve(path: Path, dataset: str, unit: str, release_id: str, spends: list[dict[str, Any]],
            caps: Caps, now: datetime, reset_hint: str = "") -> dict[str, Any]:
    """Record every spend of one release, or none: raise BlockedError if any cap would be passed.

    Check and insert happen in ONE `BEGIN IMMEDIATE` transaction, so concurrent releases are
    serialized by SQLite's write lock and the period total never passes its cap.
    """
    asked = {m: float(sum(s.get(m) or 0.0 for s in spends)) for m in MEASURES}
    since = (now - timedelta(days=caps.period_days)).isoformat(timespec="microseconds")
    stamp = now.isoformat(timespec="microseconds")
    with closing(_connect(path)) as con:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise UsageError(f"{path}: cannot lock the budget ledger ({e})") from e
        try:
            before = _totals(con, dataset, unit, since)
            problems = []
            for m in MEASURES:
                cap = caps.per_release.get(m)
                if cap is not None and asked[m] > cap * (1 + _SLACK):
                    problems.append(f"{m}_per_release cap {cap:g}: this release asks {asked[m]:g}")
                cap = caps.per_period.get(m)
                if cap is not None and before[m] + asked[m] > cap * (1 + _SLACK):
                    problems.append(f"{m}_per_period cap {cap:g} ({caps.period_days} days): {before[m]:g} already"
                                    f" spent, this release asks {asked[m]:g}, {max(cap - before[m], 0):g} left")
            if problems:
                con.execute("ROLLBACK")
                raise BlockedError(
                    f"privacy budget of {dataset} (privacy unit {unit}) would pass the {problems[0]};"
                    " nothing was published and no budget was spent",
                    details=[*problems[1:], f"ledger: {path}"] + ([reset_hint] if reset_hint else []))
            con.executemany(
                "INSERT INTO spends (dataset, privacy_unit, release_id, output, mechanism, epsilon, rho, delta,"
                " created_utc) VALUES (?,?,?,?,?,?,?,?,?)",
                [(dataset, unit, release_id, s["output"], s["mechanism"], s.get("epsilon") or 0.0,
                  s.get("rho") or 0.0, s.get("delta") or 0.0, stamp) for s in spends])
            import json

            con.execute("INSERT OR REPLACE INTO caps VALUES (?,?,?)", (dataset, unit, json.dumps(caps.to_json())))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    after = {m: before[m] + asked[m] for m in MEASURES}
    # Only the file name: the internal folder layout is not for publication.
    return {"ledger": path.name, "dataset": dataset, "privacy_unit": unit, "release_id": release_id,
            "period_days": caps.period_days, "caps": caps.to_json(), "asked": asked,
            "spent_in_period_before": before, "spent_in_period_after": after,
            "left_in_period": {m: (None if caps.per_period.get(m) is None else
                                   max(float(caps.per_period[m]) - after[m], 0.0))  # type: ignore[arg-type]
                               for m in MEASURES},
            "spends": spends}


def history(path: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """Every recorded spend (oldest first), optionally for one dataset."""
    if not path.is_file():
        raise UsageError(f"{path}: no budget ledger at this path")
    with closing(_connect(path)) as con:
        q = ("SELECT dataset, privacy_unit, release_id, output, mechanism, epsilon, rho, delta, created_utc"
             " FROM spends")
        args: list[Any] = []
        if dataset:
            q += " WHERE dataset = ?"
            args.append(dataset)
        cols = ["dataset", "privacy_unit", "release_id", "output", "mechanism", "epsilon", "rho", "delta",
                "created_utc"]
        return [dict(zip(cols, r, strict=True)) for r in con.execute(q + " ORDER BY id", args)]


def summary(path: Path, now: datetime, dataset: str | None = None) -> list[dict[str, Any]]:
    """Per dataset and privacy unit: totals, what the period caps leave, number of releases."""
    import json

    with closing(_connect(path)) as con:
        rows = con.execute("SELECT dataset, privacy_unit, caps_json FROM caps ORDER BY dataset").fetchall()
        out = []
        for ds, unit, caps_json in rows:
            if dataset and ds != dataset:
                continue
            caps = json.loads(caps_json)
            since = (now - timedelta(days=caps["period_days"])).isoformat(timespec="microseconds")
            period = _totals(con, ds, unit, since)
            total = _totals(con, ds, unit, None)
            n = con.execute("SELECT COUNT(DISTINCT release_id) FROM spends WHERE dataset=? AND privacy_unit=?",
                            (ds, unit)).fetchone()[0]
            left = {m: (None if caps["per_period"].get(m) is None else max(caps["per_period"][m] - period[m], 0.0))
                    for m in MEASURES}
            out.append({"dataset": ds, "privacy_unit": unit, "releases": int(n), "spent_total": total,
                        "spent_in_period": period, "period_days": caps["period_days"], "caps": caps,
                        "left_in_period": left})
        return out
