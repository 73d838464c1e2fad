"""`release run --json` with a `table` output prints pure JSON on stdout (HiGHS stays silent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from release.synth import synth_use_of_force, write_records
from tests.conftest import POLICIES

POLICY = POLICIES / "use-of-force-by-gender.yaml"


def test_run_json_stdout_is_parseable_json_and_reports_every_table(tmp_path: Path) -> None:
    inp = tmp_path / "uof.parquet"
    write_records(synth_use_of_force(800), inp)
    # A real process: HiGHS writes its banner with C printf to file descriptor 1, which an
    # in-process CliRunner would not capture.
    r = subprocess.run([sys.executable, "-m", "release", "run", str(POLICY), "--input", str(inp),
                        "--out", str(tmp_path / "out"), "--json"], capture_output=True, text=True,
                       env={**os.environ}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "HiGHS" not in r.stdout
    payload = json.loads(r.stdout)  # the whole of stdout, nothing before or after
    assert isinstance(payload, dict)
    bundle = next(p for p in (tmp_path / "out" / "use-of-force-by-gender").iterdir() if not p.name.startswith("."))
    fig = json.loads((bundle / "report.json").read_text())["outputs"][0]["figures"]["suppression"]
    per_table = {t["table"]: t for t in fig["tables"]}
    assert set(per_table) == {"use-of-force-by-gender_race", "use-of-force-by-gender_division"}
    for t in per_table.values():
        assert t["cells"] > 0 and t["suppressed_cells"] > 0
        assert t["smallest_interval"] >= fig["required_interval"]
    assert min(t["smallest_interval"] for t in per_table.values()) == fig["smallest_interval"]
    # What protection did, per output and per table (evidence written at build time).
    ev = json.loads((bundle / "report.json").read_text())["outputs"][0]["evidence"]
    assert ev["hypercubes"] == 0  # two-way tables: no cube, only the perturbation LP
    assert ev["audit_lp_solves"] >= 0 and ev["audit_proved_by_witness"] >= 0
    assert set(ev["secondary_by_table"]) == set(per_table)
    assert sum(ev["secondary_by_table"].values()) >= ev["secondary"] > 0
    # The hidden share of the true totals is internal: never in the bundle.
    assert "suppressed_total_share" not in (bundle / "report.json").read_text()
