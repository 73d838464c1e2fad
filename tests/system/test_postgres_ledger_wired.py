"""`[ledger] url`: DP releases reserve on the PostgreSQL ledger; the cap holds across runs; check finds the entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release.check import check_bundle
from release.dp import ledger_pg as LP
from release.engine import run_release
from release.errors import BlockedError
from release.synth import synth_use_of_force, write_records
from tests.conftest import UNAPPROVED
from tests.system import pg

# `[ledger] url` is read by release/dp/sources.py (the registered-sources branch, issue 12); on a branch
# without it there is no [ledger] table to wire. Once merged, this test needs the wiring (docs/postgres.md).
pytest.importorskip("release.dp.sources", reason="release.dp.sources ([ledger], issue 12) is not on this branch")

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "use-of-force-by-race.yaml"


def test_ledger_url_runs_reserve_on_postgres(pg_server: pg.Server, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.budget import write_config

    pg.create_database(pg_server, "wired")
    cfg = write_config(tmp_path, uof_period=3.0)
    text = cfg.read_text().replace('path = "ledger.sqlite"', f'url = "{pg_server.url("wired")}"\nuser = "postgres"\n'
                                   'password_env = "H15_LEDGER_PW"')
    cfg.write_text(text)
    monkeypatch.setenv("RELEASE_CONFIG", str(cfg))
    monkeypatch.setenv("H15_LEDGER_PW", pg.SUPERUSER_PASSWORD)
    import yaml

    doc = yaml.safe_load(POLICY.read_text())
    doc["budget"]["epsilon_per_period"] = 3.0
    policy = tmp_path / "uof.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    data = tmp_path / "uof.parquet"
    write_records(synth_use_of_force(200), data)
    out = tmp_path / "out"
    a = run_release(policy, data, out)
    b = run_release(policy, data, out)
    with pytest.raises(BlockedError, match="epsilon_per_period cap 3"):
        run_release(policy, data, out)
    conn = LP.connection_of({"url": pg_server.url("wired"), "user": "postgres", "password_env": "H15_LEDGER_PW"})
    lid, entries, problems = LP.read(conn)
    assert problems == [] and [e["release_id"] for e in entries] == [a.report["release_id"], b.report["release_id"]]
    man = json.loads((b.bundle / "manifest.json").read_text())
    assert man["budget"]["ledger"] == f"postgresql://127.0.0.1:{pg_server.port}/wired"
    assert pg.SUPERUSER_PASSWORD not in json.dumps(man)
    res = check_bundle(b.bundle, options=UNAPPROVED)
    f = {x.check: x for x in res.findings}
    assert f["dp-ledger"].ok and "2 entries" in f["dp-ledger"].message, f["dp-ledger"].message
