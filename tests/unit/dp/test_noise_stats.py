"""Noise drawn through OpenDP follows the distribution at the reported scale, and a 10%-off scale is rejected."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from release.dp.noise import noisy_vector

N = 20_000
TRUE = 50


def _pmf(mechanism: str, scale: float, support: np.ndarray) -> np.ndarray:
    k = support.astype(float)
    w = np.exp(-np.abs(k) / scale) if mechanism == "laplace" else np.exp(-(k**2) / (2 * scale**2))
    return w / w.sum()


def _chi2_pvalue(noise: np.ndarray, mechanism: str, scale: float) -> float:
    """Chi-square goodness of fit of integer noise against the discrete distribution at `scale`."""
    span = int(np.ceil(12 * scale)) + 5
    support = np.arange(-span, span + 1)
    p = _pmf(mechanism, scale, support)
    exp = p * len(noise)
    # Merge the tails into bins with an expected count of at least 5.
    ok = exp >= 5
    lo, hi = support[ok][0], support[ok][-1]
    obs_mid = np.bincount(np.clip(noise, lo, hi) - lo, minlength=hi - lo + 1).astype(float)
    exp_mid = np.r_[p[support < lo].sum() + p[support == lo].sum(), p[(support > lo) & (support < hi)],
                    p[support >= hi].sum()] * len(noise)
    return float(stats.chisquare(obs_mid, exp_mid).pvalue)


@pytest.fixture(scope="module")
def laplace_draws() -> np.ndarray:
    return noisy_vector(np.full(N, TRUE), "laplace", 4.0) - TRUE


@pytest.fixture(scope="module")
def gaussian_draws() -> np.ndarray:
    return noisy_vector(np.full(N, TRUE), "gaussian", 4.0) - TRUE


def test_discrete_laplace_matches_reported_scale(laplace_draws: np.ndarray) -> None:
    assert laplace_draws.dtype == np.int64
    assert _chi2_pvalue(laplace_draws, "laplace", 4.0) > 1e-4


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_discrete_laplace_rejects_scale_10_percent_off(laplace_draws: np.ndarray, factor: float) -> None:
    assert _chi2_pvalue(laplace_draws, "laplace", 4.0 * factor) < 1e-6


def test_discrete_gaussian_matches_reported_scale(gaussian_draws: np.ndarray) -> None:
    assert _chi2_pvalue(gaussian_draws, "gaussian", 4.0) > 1e-4


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_discrete_gaussian_rejects_scale_10_percent_off(gaussian_draws: np.ndarray, factor: float) -> None:
    assert _chi2_pvalue(gaussian_draws, "gaussian", 4.0 * factor) < 1e-6


def test_duplicated_samples_are_rejected(laplace_draws: np.ndarray) -> None:
    """Noise reused instead of drawn afresh (each value twice) no longer fits the distribution's spread."""
    dup = np.repeat(laplace_draws[: N // 8], 8)
    assert _chi2_pvalue(dup, "laplace", 4.0) < 1e-3
