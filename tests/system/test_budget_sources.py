"""Acceptance (issue 12): a privacy budget nobody can reset. Each test attacks one way the budget used to reset
(the ledger deleted, truncated, edited, swapped or chosen elsewhere; the policy copied, the dataset renamed, the
privacy-unit column changed; bundles from fresh ledgers gathered in one folder) and fails if that protection goes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from release import registry
from release.cli import main
from release.dp import ledger as L
from release.synth import synth_use_of_force, write_records
from tests.budget import write_config

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "use-of-force-by-race.yaml"


@pytest.fixture(scope="module")
def uof(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("uof-budget") / "uof.parquet"
    write_records(synth_use_of_force(200), p)
    return p


@pytest.fixture(autouse=True)
def _no_html(monkeypatch: pytest.MonkeyPatch) -> None:
    # The HTML reports (public and internal) are not under test here; without them a run takes a fifth of the time.
    monkeypatch.setattr(registry, "RENDERERS", [])
    monkeypatch.setattr(registry, "PRE_PUBLISH", [])


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner(env={"RELEASE_CONFIG": None}).invoke(main, list(args))  # type: ignore[dict-item]
    return r.exit_code, r.output


def run(policy: Path, data: Path, out: Path, config: Path, *extra: str) -> tuple[int, str]:
    return _cli("run", str(policy), "--input", str(data), "--out", str(out), "--config", str(config), "-q",
                *extra)


def edited(tmp: Path, name: str, change: dict[str, dict[str, object]] | None = None,
           dataset: str | None = None, period: float | None = None) -> Path:
    """The bundled policy with changes; `period` lowers its period cap (and the gate's) to that epsilon."""
    doc = yaml.safe_load(POLICY.read_text())
    if period is not None:
        doc["budget"]["epsilon_per_period"] = doc["gate"]["max_epsilon_per_period"] = period
    for section, kv in (change or {}).items():
        doc[section].update(kv)
    if dataset:
        doc["dataset"]["name"] = dataset
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def bundles(out: Path) -> list[Path]:
    return sorted(b for d in out.iterdir() if not d.name.startswith(".") for b in d.iterdir()) if out.exists() else []


@pytest.fixture
def deployment(tmp_path: Path) -> dict[str, Path]:
    """A deployment whose use-of-force source allows three releases (epsilon 4.5) per period."""
    cfg = write_config(tmp_path / "deploy", uof_period=4.5)
    return {"config": cfg, "ledger": tmp_path / "deploy" / "ledger.sqlite", "out": tmp_path / "out",
            "policy": edited(tmp_path, "uof.yaml", period=4.5)}


def _two_releases(d: dict[str, Path], uof: Path) -> None:
    for _ in range(2):
        code, text = run(d["policy"], uof, d["out"], d["config"])
        assert code == 0, text


def test_deleted_ledger_refuses_the_next_run(deployment: dict[str, Path], uof: Path) -> None:
    _two_releases(deployment, uof)
    deployment["ledger"].unlink()
    code, text = run(deployment["policy"], uof, deployment["out"], deployment["config"])
    assert code == 1, text
    assert "2 published bundle(s) record a spend the budget ledger ledger.sqlite does not hold" in text
    assert len(bundles(deployment["out"])) == 2  # nothing published


def test_truncated_ledger_refuses_the_next_run(deployment: dict[str, Path], uof: Path) -> None:
    _two_releases(deployment, uof)
    # Cutting the last entry leaves a valid chain: the published bundle still records it.
    with sqlite3.connect(deployment["ledger"]) as con:
        con.execute("DELETE FROM entries WHERE seq = 2")
    code, text = run(deployment["policy"], uof, deployment["out"], deployment["config"])
    assert code == 1, text
    assert "1 published bundle(s) record a spend the budget ledger" in text and "is not in the ledger" in text


def test_edited_ledger_breaks_the_chain(deployment: dict[str, Path], uof: Path) -> None:
    _two_releases(deployment, uof)
    with sqlite3.connect(deployment["ledger"]) as con:
        con.execute("UPDATE entries SET epsilon = 0 WHERE seq = 1")
    code, text = run(deployment["policy"], uof, deployment["out"], deployment["config"])
    assert code == 1, text
    assert "hash chain is broken" in text and "entry 1: its content does not match its hash" in text


def test_edited_and_rehashed_ledger_no_longer_holds_the_bundles_spends(deployment: dict[str, Path],
                                                                       uof: Path) -> None:
    """A careful forger zeroes the spends and recomputes every hash: the chain verifies, the bundles disagree."""
    _two_releases(deployment, uof)
    with sqlite3.connect(deployment["ledger"]) as con:
        con.execute("UPDATE entries SET epsilon = 0")
        lid = con.execute("SELECT value FROM meta WHERE key='ledger_id'").fetchone()[0]
        prev = L.genesis_hash(lid)
        cols = [*L.ENTRY_FIELDS, "hash"]
        for row in con.execute(f"SELECT {', '.join(cols)} FROM entries ORDER BY seq").fetchall():
            e = dict(zip(cols, row, strict=True))
            e["detail"], e["prev_hash"] = json.loads(e["detail"]), prev
            prev = L.entry_hash(e)
            con.execute("UPDATE entries SET prev_hash=?, hash=? WHERE seq=?", (e["prev_hash"], prev, e["seq"]))
    assert not L.read(deployment["ledger"])[2]  # the forged chain verifies
    code, text = run(deployment["policy"], uof, deployment["out"], deployment["config"])
    assert code == 1, text
    assert "2 published bundle(s) record a spend" in text


def test_swapped_ledger_refuses_the_next_run(deployment: dict[str, Path], uof: Path, tmp_path: Path) -> None:
    _two_releases(deployment, uof)
    other = write_config(tmp_path / "other", uof_period=4.5)
    code, text = run(deployment["policy"], uof, tmp_path / "other-out", other)
    assert code == 0, text
    shutil.copy(tmp_path / "other" / "ledger.sqlite", deployment["ledger"])  # a valid ledger, another chain
    code, text = run(deployment["policy"], uof, deployment["out"], deployment["config"])
    assert code == 1, text
    assert "swapped or recreated" in text


def test_copied_policy_renamed_dataset_and_changed_unit_column_share_one_budget(tmp_path: Path, uof: Path) -> None:
    """The budget is the source's: a copy elsewhere, a new dataset name or another unit column spends the same."""
    cfg = write_config(tmp_path / "deploy", uof_period=4.5)
    copies = [edited(tmp_path, "uof.yaml", period=4.5),
              edited(tmp_path / "elsewhere", "uof.yaml", period=4.5),
              edited(tmp_path, "renamed.yaml", dataset="force-by-race-renamed", period=4.5),
              edited(tmp_path, "unit.yaml", {"budget": {"privacy_unit": "record_id"}}, period=4.5)]
    results = [run(p, uof, tmp_path / f"out{i}", cfg) for i, p in enumerate(copies)]
    assert [c for c, _ in results] == [0, 0, 0, 1], results
    assert "privacy budget of source use-of-force-records (privacy unit person) would pass the epsilon_per_period" \
           " cap 4.5" in results[3][1]
    spends = L.history(tmp_path / "deploy" / "ledger.sqlite")
    assert {(s["source"], s["unit"]) for s in spends} == {("use-of-force-records", "person")}
    assert {s["dataset"] for s in spends} == {"use-of-force-by-race", "force-by-race-renamed"}


def test_ledger_elsewhere_is_refused_outside_test_mode(tmp_path: Path, uof: Path) -> None:
    from release.governance.keys import generate

    generate(tmp_path / "keys" / "release.pem", kind="release")
    cfg = write_config(tmp_path, extra='\n[signing]\nkey = "keys/release.pem"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("RELEASE_TEST_MODE", "RELEASE_CONFIG")}

    def real(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "release", "run", str(POLICY), "--input", str(uof), "--out",
                               str(tmp_path / "out"), "--config", str(cfg), "-q", *extra],
                              env=env, capture_output=True, text=True, timeout=300)

    r = real("--ledger", str(tmp_path / "fresh.sqlite"))
    assert r.returncode == 2, r.stderr
    assert "is not the deployment's ledger" in r.stderr and "a fresh budget" in r.stderr
    assert not (tmp_path / "fresh.sqlite").exists() and not (tmp_path / "out").exists()
    r = real("--ledger", str(tmp_path / "ledger.sqlite"))  # repeating the configured ledger is fine
    assert r.returncode == 0, r.stderr


def test_seven_bundles_over_a_one_release_cap_fail_check_all(tmp_path: Path, uof: Path) -> None:
    """Seven releases, each against a fresh ledger of its own, gathered in one folder: the folder re-count fails."""
    folder = tmp_path / "published"
    policy = edited(tmp_path, "uof.yaml", period=1.5)
    for i in range(7):
        cfg = write_config(tmp_path / f"d{i}", uof_period=1.5)
        code, text = run(policy, uof, tmp_path / f"out{i}", cfg)
        assert code == 0, text
        (b,) = bundles(tmp_path / f"out{i}")
        shutil.copytree(b, folder / b.parent.name / b.name)
    cfg = write_config(tmp_path / "verifier", uof_period=1.5)
    code, text = _cli("check-all", str(folder), "--config", str(cfg), "--allow-unapproved")
    assert code == 1
    assert ("FAIL [budget-recount] 7 release(s) of source use-of-force-records (person) re-counted from the folder:"
            " epsilon spent in one 365-day period reaches 10.5, above the ceiling 1.5") in text
    # One of them alone is within the ceiling.
    only = tmp_path / "one"
    b = bundles(folder)[0]
    shutil.copytree(b, only / b.parent.name / b.name)
    code, text = _cli("check-all", str(only), "--config", str(cfg), "--allow-unapproved")
    assert "ok   [budget-recount] 1 release(s)" in text


def test_check_compares_the_bundle_with_the_ledger(deployment: dict[str, Path], uof: Path, tmp_path: Path) -> None:
    _two_releases(deployment, uof)
    first = bundles(deployment["out"])[0]
    args = ("check", str(first), "--config", str(deployment["config"]), "--allow-unapproved")
    code, text = _cli(*args, "--ledger", str(deployment["ledger"]))
    assert "ok   [dp-ledger]" in text and "holds this bundle's spend (entry" in text, text
    other = write_config(tmp_path / "other", uof_period=4.5)
    assert run(deployment["policy"], uof, tmp_path / "o2", other)[0] == 0
    code, text = _cli(*args, "--ledger", str(tmp_path / "other" / "ledger.sqlite"))
    assert code == 1 and "FAIL [dp-ledger]" in text and "swapped or recreated" in text
    with sqlite3.connect(deployment["ledger"]) as con:
        con.execute("UPDATE entries SET delta = 1e-3 WHERE seq = 2")
    code, text = _cli(*args, "--ledger", str(deployment["ledger"]))
    assert code == 1 and "FAIL [dp-ledger]" in text and "is not intact" in text


@pytest.mark.parametrize(("change", "message"), [
    ({"budget": {"source": "no-such-source"}}, "budget.source 'no-such-source' is not a source registered"),
    ({"budget": {"source": None}}, "budget.source: a DP policy names the internal source"),
    ({"budget": {"epsilon_per_period": 1000.0}, "gate": {"max_epsilon_per_period": 1000.0}},
     "budget.epsilon_per_period 1000 raises the ceiling 15 of source use-of-force-records"),
    ({"budget": {"epsilon": 1e9, "epsilon_per_release": 1e9}, "gate": {"max_epsilon_per_release": 1e9}},
     "budget.epsilon_per_release 1e+09 raises the ceiling 1.5"),
    ({"budget": {"epsilon": 1e-300, "epsilon_per_release": 1.5}}, "budget.epsilon 1e-300 is below the floor 0.01"),
    ({"budget": {"epsilon": 1e-320}}, "epsilon must be a finite, normal positive number"),
    ({"budget": {"epsilon_per_period": None}, "gate": {"max_epsilon_per_period": None}},
     "a DP policy needs a period cap"),
    ({"budget": {"period_days": 30}}, "budget.period_days 30 differs from the source's rolling period 365"),
])
def test_policy_errors_against_the_deployment(tmp_path: Path, uof: Path, change: dict, message: str) -> None:
    cfg = write_config(tmp_path / "deploy")
    code, text = run(edited(tmp_path, "p.yaml", change), uof, tmp_path / "out", cfg)
    assert code == 2, text
    assert message in text
    assert not (tmp_path / "out").exists() and not (tmp_path / "deploy" / "ledger.sqlite").exists()


def _v1_ledger(path: Path, datasets: list[str]) -> None:
    with sqlite3.connect(path) as con:
        con.executescript("""
            CREATE TABLE spends (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL,
              privacy_unit TEXT NOT NULL, release_id TEXT NOT NULL, output TEXT NOT NULL, mechanism TEXT NOT NULL,
              epsilon REAL NOT NULL DEFAULT 0, rho REAL NOT NULL DEFAULT 0, delta REAL NOT NULL DEFAULT 0,
              created_utc TEXT NOT NULL);
            CREATE TABLE caps (dataset TEXT NOT NULL, privacy_unit TEXT NOT NULL, caps_json TEXT NOT NULL,
              PRIMARY KEY (dataset, privacy_unit));""")
        from datetime import UTC, datetime

        now = datetime.now(UTC).isoformat(timespec="microseconds")
        for i, ds in enumerate(datasets):
            con.execute("INSERT INTO spends (dataset, privacy_unit, release_id, output, mechanism, epsilon,"
                        " created_utc) VALUES (?,?,?,?,?,?,?)", (ds, "person_id", f"old-{i}", "t", "laplace", 1.5, now))


def test_old_ledgers_are_migrated_when_unambiguous_else_refused(tmp_path: Path, uof: Path) -> None:
    cfg = write_config(tmp_path / "deploy", uof_period=3.0)
    policy = edited(tmp_path, "uof.yaml", period=3.0)
    _v1_ledger(tmp_path / "deploy" / "ledger.sqlite", ["use-of-force-by-race"])
    code, text = run(policy, uof, tmp_path / "out", cfg)
    assert code == 0, text
    spends = L.history(tmp_path / "deploy" / "ledger.sqlite")
    assert [s["release_id"] for s in spends][0] == "old-0" and spends[0]["source"] == "use-of-force-records"
    code, text = run(policy, uof, tmp_path / "out", cfg)  # the old spend still counts: 1.5 + 1.5 = 3.0
    assert code == 1 and "epsilon_per_period cap 3" in text
    # Two datasets in the old ledger: which source each belongs to is the operator's call.
    cfg2 = write_config(tmp_path / "deploy2")
    _v1_ledger(tmp_path / "deploy2" / "ledger.sqlite", ["use-of-force-by-race", "monthly-crime-counts"])
    code, text = run(POLICY, uof, tmp_path / "out2", cfg2)
    assert code == 2 and "cannot be re-keyed by source automatically" in text and "release ledger migrate" in text
    code, text = _cli("ledger", "migrate", "--ledger", str(tmp_path / "deploy2" / "ledger.sqlite"), "--config",
                      str(cfg2), "--map", "use-of-force-by-race=use-of-force-records",
                      "--map", "monthly-crime-counts=crime-records")
    assert code == 0, text
    code, text = run(POLICY, uof, tmp_path / "out2", cfg2)
    assert code == 0, text
    assert len(L.history(tmp_path / "deploy2" / "ledger.sqlite")) == 3


def test_ledger_verify_reports_the_chain_and_the_folder(deployment: dict[str, Path], uof: Path) -> None:
    _two_releases(deployment, uof)
    args = ("ledger", "verify", "--config", str(deployment["config"]), "--out", str(deployment["out"]))
    code, text = _cli(*args)
    assert code == 0 and "ok: " in text and "2 entries" in text, text
    with sqlite3.connect(deployment["ledger"]) as con:
        con.execute("DELETE FROM entries WHERE seq = 2")
    code, text = _cli(*args)
    assert code == 1 and "is not in the ledger" in text, text
