"""`release synth --kind enforcement`: one row per person per action, the columns the bundled policy declares."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from release.cli import main
from release.policy.loader import load_policy
from tests.conftest import POLICIES


def test_enforcement_records_match_the_bundled_policy(tmp_path: Path) -> None:
    out = tmp_path / "enf.csv"
    r = CliRunner().invoke(main, ["synth", "--kind", "enforcement", "--records", "2000", "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out, dtype=str)
    policy = load_policy(POLICIES / "enforcement-benchmarking.yaml")
    assert set(df.columns) == set(policy.input.columns) and len(df) == 2000
    assert df["record_id"].is_unique and df["person_id"].nunique() < len(df)  # people recur across actions
    for c in ("use_of_force", "strip_search", "booked"):
        assert set(df[c]) == {"Yes", "No"}
    # Rates differ by group, so the demo's indices have something to show.
    rate = (df["use_of_force"] == "Yes").groupby(df["perceived_race"]).mean()
    assert rate.max() > 1.5 * rate.min()
