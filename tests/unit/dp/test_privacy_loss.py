"""Black-box privacy loss: the count pipeline on D and on D minus one person with many rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from release.dp import keys as K
from release.dp.bounding import bound_contributions, bounding_key
from release.dp.noise import laplace_scale, noisy_vector

DRAWS = 30_000
KEYS = [["A", "B"], ["x", "y"]]


def _records(with_heavy: bool) -> pd.DataFrame:
    rows = [{"rid": f"r{i}", "pid": f"p{i % 40}", "g": "AB"[i % 2], "h": "xy"[(i // 2) % 2]} for i in range(120)]
    if with_heavy:
        # One person with 60 records, all in cell (A, x): unbounded, they would move it by 60.
        rows += [{"rid": f"h{i}", "pid": "heavy", "g": "A", "h": "x"} for i in range(60)]
    return pd.DataFrame(rows)


def _true_cells(frame: pd.DataFrame, max_records: int | None) -> np.ndarray:
    if max_records is not None:
        keep, _ = bound_contributions(frame, "pid", "rid", ["g", "h"], max_records, None, bounding_key(None))
        frame = frame.loc[keep]
    flat = K.grid_codes(frame, ["g", "h"], KEYS)
    return np.bincount(flat[flat >= 0], minlength=4)


def _empirical_loss(max_records: int | None, epsilon: float) -> float:
    """Largest |log P(M(D)=o) / P(M(D')=o)| over outcomes o seen often enough to estimate."""
    sens = max_records if max_records is not None else 1
    scale = laplace_scale(sens, epsilon)
    d = _true_cells(_records(True), max_records)[0]
    d2 = _true_cells(_records(False), max_records)[0]
    # Many runs of the noising on the cell the heavy person hits, one OpenDP call each.
    a = noisy_vector(np.full(DRAWS, d), "laplace", scale)
    b = noisy_vector(np.full(DRAWS, d2), "laplace", scale)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    ca = np.bincount(a - lo, minlength=hi - lo + 1)
    cb = np.bincount(b - lo, minlength=hi - lo + 1)
    ok = (ca >= 300) & (cb >= 300)
    if not ok.any():
        return float("inf")  # the two output distributions barely overlap: unbounded loss
    return float(np.abs(np.log(ca[ok] / cb[ok])).max())


def test_empirical_loss_within_claimed_epsilon() -> None:
    eps = 1.0
    loss = _empirical_loss(max_records=3, epsilon=eps)
    # Statistical slack: counts of >= 300 per outcome give log-ratio errors well under 0.25.
    assert loss <= eps + 0.25, loss
    assert loss > 0.5 * eps  # the neighbouring datasets do differ: the test has power


def test_without_bounding_the_loss_would_exceed_epsilon() -> None:
    """The same test detects a pipeline that charges sensitivity 1 but lets one person add 60 rows."""
    assert _empirical_loss(max_records=None, epsilon=1.0) > 2.0
