"""Accuracy of DP tables: noise scale per part and the 95% error bound per cell, known before any record is read."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from release.dp.noise import accuracy_95, gaussian_scale, laplace_scale, privacy_loss


def part_scale(share: dict[str, Any], parts: int, sensitivity: int) -> tuple[float, dict[str, float]]:
    """Noise scale when the output's share is split evenly over `parts` noised vectors (cells + margins).

    Returns the scale and the per-part loss as OpenDP's privacy map states it; the scale is nudged
    up by ulps if float rounding would make OpenDP charge more than the share.
    """
    mech = share["mechanism"]
    measure = "rho" if mech == "gaussian" else "epsilon"
    budget = float(share[measure]) / parts
    scale = gaussian_scale(sensitivity, budget) if mech == "gaussian" else laplace_scale(sensitivity, budget)
    for _ in range(64):
        loss = privacy_loss(mech, scale, sensitivity)
        if loss <= budget:
            break
        scale = math.nextafter(scale, math.inf) * (1 + 1e-12)
    return scale, {measure: loss}


def describe_accuracy(mechanism: str, scale: float) -> dict[str, Any]:
    """Figures the report and the plan show for one table."""
    return {"scale": scale, "accuracy_95": accuracy_95(mechanism, scale),
            "accuracy_meaning": "the true value lies within ± accuracy_95 of the noisy value with 95% probability;"
                                " published intervals are truncated at zero where values are clipped"}


DROWNED_WARNING = 0.5
"A table is flagged when fewer than this share of its cells stand above their 95% error."


def signal_figures(values: np.ndarray, acc: float) -> dict[str, Any]:
    """Share of published cells whose value exceeds its 95% error (the rest are 'drowned': noise could
    have made them from nothing), and a warning when most of the table is noise."""
    cells = len(values)
    drowned = int((values < acc).sum())
    share = 1.0 - drowned / cells if cells else 1.0
    fig: dict[str, Any] = {"drowned_cells": drowned, "signal_share": round(share, 6)}
    if cells and share < DROWNED_WARNING:
        fig["warning"] = (f"{drowned:,} of {cells:,} published cells ({drowned / cells:.0%}) are below their 95%"
                          f" error (±{acc:.1f}): they are mostly noise; read them with their intervals")
    return fig


def expected_signal_share(mechanism: str, scale: float, mean_cell: float, acc: float) -> float:
    """Before any record: chance that a cell of expected value `mean_cell` is published at or above the
    95% error (the continuous Laplace or Gaussian tail at the same scale; cells spread evenly)."""
    x = acc - mean_cell
    if mechanism == "gaussian":
        return 0.5 * math.erfc(x / (scale * math.sqrt(2.0)))
    return 0.5 * math.exp(-x / scale) if x >= 0 else 1.0 - 0.5 * math.exp(x / scale)
