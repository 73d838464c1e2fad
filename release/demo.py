"""The demo release: synthetic records and city, every bundled policy run and checked."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from release.errors import ReleaseError

DEFAULT_POLICIES = Path(__file__).resolve().parent.parent / "policies"

# Hooks that prepare the demo (e.g. sign the bundled policies with a demo key): fn(work_dir, policies, options).
DEMO_SETUP: list[Callable[[Path, list[Path], dict[str, Any]], None]] = []


def demo_inputs(work: Path, n: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Write the synthetic inputs once per record count; return the paths and run options."""
    from release.synth import (
        demo_city,
        synth_crimes,
        synth_enforcement,
        synth_use_of_force,
        write_records,
    )

    work.mkdir(parents=True, exist_ok=True)
    key = work / "pseudonym.key"
    if not key.exists():
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
    # The bundled policies read the HMAC key from this variable; the demo keeps its own key.
    os.environ.setdefault("RELEASE_PSEUDONYM_KEY", key.read_text().strip())
    net = work / "network"
    crimes = work / f"crimes-{n}.parquet"
    uof = work / f"use-of-force-{max(n // 4, 100)}.parquet"
    city = None
    if not (net / "nodes.csv").exists():
        progress("building the demo street network")
        city = demo_city()
        city.write(net)
    if not crimes.exists():
        progress(f"synthesizing {n:,} crime records")
        city = city or demo_city()
        write_records(synth_crimes(n, city), crimes)
    if not uof.exists():
        progress(f"synthesizing {max(n // 4, 100):,} use-of-force records")
        write_records(synth_use_of_force(max(n // 4, 100)), uof)
    enf = work / f"enforcement-{n}.parquet"
    if not enf.exists():
        write_records(synth_enforcement(n), enf)
    return {
        "inputs": {"crimes": crimes, "use-of-force": uof, "enforcement": enf, **_published_tables()},
        "options": {"network": str(net / "nodes.csv"), "addresses": str(net / "addresses.csv"),
                    "streets": str(net / "streets.geojson"), "neighbourhoods": str(net / "neighbourhoods.geojson"),
                    "divisions": str(net / "divisions.geojson"), "ledger": str(work / "ledger.sqlite")},
    }


# A real published table the demo also protects when the shared data sits beside the checkout
# (it is read in place, never copied).
TPS_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tps"


def _published_tables() -> dict[str, Path]:
    table = TPS_DATA / "rbdc_uof_gender.csv"
    return {"published TPS table": table} if table.is_file() else {}


def _columns_of(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    if path.suffix == ".csv":
        import csv

        with open(path, encoding="utf-8-sig", newline="") as f:
            return set(next(csv.reader(f), []))

    return set(pq.read_schema(path).names)


def run_demo(out: Path, n: int, work: Path, policies_dir: Path | None,
             progress: Callable[[str], None]) -> list[dict[str, Any]]:
    # Imported here, not at the top: plug-ins (loaded while the policy models are built) import this
    # module to register DEMO_SETUP hooks, and must not pull the policy models in a second time.
    from release.check import check_bundle
    from release.engine import run_release
    from release.policy.loader import load_policy

    setup = demo_inputs(work, n, progress)
    policies = sorted((policies_dir or DEFAULT_POLICIES).glob("*.yaml"))
    for hook in DEMO_SETUP:
        hook(work, policies, setup["options"])
    cols = {k: _columns_of(p) for k, p in setup["inputs"].items()}
    rows = []
    for pol in policies:
        t0 = time.perf_counter()
        policy = load_policy(pol)
        declared = set(policy.input.columns)
        kind = next((k for k, c in cols.items() if declared == c), None)
        row: dict[str, Any] = {"policy": pol.name, "dataset": policy.dataset.name, "outputs": 0, "rows": 0}
        if kind is None:
            row.update(verdict="skipped (no demo input has its columns)", check="-", seconds="-")
            rows.append(row)
            continue
        progress(f"running {pol.name} on synthetic {kind} records")
        try:
            res = run_release(pol, setup["inputs"][kind], out, options=setup["options"], progress=progress)
            chk = check_bundle(res.bundle, options=setup["options"]) if res.bundle else None
            row.update(verdict=res.verdict, outputs=len(res.report["outputs"]),
                       rows=sum(o.get("figures", {}).get("rows", 0) or 0 for o in res.report["outputs"]),
                       check="pass" if chk and chk.ok else "FAIL")
        except ReleaseError as e:
            row.update(verdict=f"{e.kind}: {e.message}", check="-")
            progress(e.render())
        row["seconds"] = f"{time.perf_counter() - t0:.1f}"
        rows.append(row)
    return rows
