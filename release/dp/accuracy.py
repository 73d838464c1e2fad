"""Accuracy of DP tables: noise scale per part and the 95% error bound per cell, known before any record is read."""

from __future__ import annotations

import math
from typing import Any

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
            "accuracy_meaning": "95% of cells are within ± accuracy_95 of the true value before post-processing"}
