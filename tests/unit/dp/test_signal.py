"""Honest DP utility: the share of cells above their 95% error, its warning and gate, the plan-time
estimate from an expected total, and the post_processing choices as published."""

from __future__ import annotations

import numpy as np
import pytest

from release.errors import BlockedError
from release.plan import compile_plan

from .test_table import BASE, BUDGET, assess, build, frame, policy


def with_gate(outputs: str, gate: str) -> object:
    from release.policy.loader import parse_policy

    text = BASE.replace("OUTPUTS", outputs).replace("BUDGET", BUDGET + "\n" + gate)
    return parse_policy(text, "t.yaml")


def test_drowned_cells_are_counted_warned_and_gated() -> None:
    # 3 keys over 400 records at epsilon 1 with a rare key: the big cells stand out, the empty one drowns.
    p = with_gate("  - {name: c, kind: dp-table, by: [g], keys: {g: categories}}", "gate: {min_signal_share: 0.9}")
    out, b = build(p, frame())
    figs, ok = assess(p, out, b.tables)
    dp = figs["dp"]
    v = b.tables["c"]["count"].astype(float).to_numpy()
    assert dp["drowned_cells"] == int((v < dp["accuracy_95"]).sum()) >= 1
    assert dp["signal_share"] == pytest.approx(1 - dp["drowned_cells"] / 3, abs=1e-6)
    assert ok["dp-signal"] is False
    assert dp["intervals_truncated_at_zero"] is True and "max(0" in dp["interval_95"]


def test_warning_when_most_cells_are_noise() -> None:
    p = policy("  - {name: c, kind: dp-table, by: [h, g], keys: {g: categories, h: [x, rare, a, b, c, d]}}")
    out, b = build(p, frame())
    figs, _ = assess(p, out, b.tables)
    assert figs["dp"]["signal_share"] < 0.5 and "mostly noise" in figs["dp"]["warning"]


def test_plan_estimates_signal_share_and_run_refuses_before_reading(tmp_path) -> None:  # noqa: ANN001
    out = "  - {name: c, kind: dp-table, by: [g, h], keys: {g: categories, h: [x, y, z]}, expected_total: 45}"
    p = with_gate(out, "gate: {min_signal_share: 0.8}")
    info = compile_plan(p).to_json()["outputs"][0]
    est = info["expected_signal_share"]
    assert 0 < est < 0.8  # 5 records per cell against an error of about ±6
    from release.dp.table import signal_preflight

    with pytest.raises(BlockedError, match="min_signal_share"):
        signal_preflight(p, None, {})
    big = with_gate(out.replace("45", "45000"), "gate: {min_signal_share: 0.8}")
    signal_preflight(big, None, {})  # a table that will stand out passes


@pytest.mark.parametrize("choice", ["none", "nonnegative", "consistent"])
def test_post_processing_choices_as_published(choice: str) -> None:
    out = (f"  - {{name: c, kind: dp-table, by: [h, g], keys: {{g: categories, h: [x, rare, a]}},"
           f" margins: [[h]], post_processing: {choice}}}")
    p = policy(out)
    o, b = build(p, frame())
    figs, ok = assess(p, o, b.tables)
    cells = b.tables["c"]["count"].astype(float).to_numpy()
    margin = b.tables["c_by_h"]["count"].astype(float).to_numpy()
    sums = cells.reshape(3, 3).sum(axis=1)
    assert figs["dp"]["post_processing_choice"] == choice
    if choice == "consistent":
        assert (sums == margin).all() and ok["dp-margins"]
    else:
        assert "not the sums of their cells" in " ".join(figs["dp"]["post_processing"])
    if choice == "none":
        assert figs["dp"]["intervals_truncated_at_zero"] is False
    else:
        assert (cells >= 0).all() and (margin >= 0).all()
    assert ok["dp-integers"]
    assert np.isfinite(cells).all()
