"""Eight releases of one policy start together against one budget: the chained ledger never passes the cap."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import yaml

from release.dp import ledger as L
from release.errors import BlockedError
from release.synth import synth_use_of_force, write_records
from tests.budget import write_config

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "use-of-force-by-race.yaml"


def _release(args: tuple[str, str, str, str]) -> str:
    from release import registry
    from release.engine import run_release

    # The HTML report is not under test here; leaving it out keeps eight runs on two cores fast.
    registry.RENDERERS.clear()
    registry.PRE_PUBLISH.clear()
    registry.POST_BUNDLE[:] = [h for h in registry.POST_BUNDLE if not h.__module__.startswith("release.report")]
    policy, data, out, config = args
    try:
        res = run_release(policy, data, out, options={"config": config})
        return "pass" if res.bundle else "none"
    except BlockedError as e:
        return "blocked: " + e.message


def test_eight_concurrent_releases_never_pass_the_cap(tmp_path: Path) -> None:
    doc = yaml.safe_load(POLICY.read_text())
    doc["budget"]["epsilon_per_period"] = 4.5  # three releases of 1.5
    doc["gate"]["max_epsilon_per_period"] = 4.5
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    data = tmp_path / "uof.parquet"
    write_records(synth_use_of_force(200), data)
    config = write_config(tmp_path, uof_period=4.5)
    ledger = tmp_path / "ledger.sqlite"
    out = tmp_path / "out"
    with mp.get_context("fork").Pool(8) as pool:
        results = pool.map(_release, [(str(policy), str(data), str(out), str(config))] * 8)
    _, entries, problems = L.read(ledger)
    assert not problems and len(entries) == 3  # one chained entry per published release, the chain intact
    spends = L.history(ledger)
    assert sum(s["epsilon"] for s in spends) <= 4.5 + 1e-9
    assert results.count("pass") == 3, results
    assert all("epsilon_per_period cap 4.5" in r for r in results if r != "pass")
    released = {s["release_id"] for s in spends}
    assert released == {p.name for p in (out / "use-of-force-by-race").iterdir()}  # one bundle per spend
    # Each bundle records its own entry, as the ledger holds it.
    import json

    recorded = {json.loads((b / "manifest.json").read_text())["budget"]["entry"]["hash"]
                for b in (out / "use-of-force-by-race").iterdir()}
    assert recorded == {e["hash"] for e in entries}
