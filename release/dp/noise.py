"""OpenDP measurements that noise exact aggregates: discrete Laplace, discrete Gaussian, thresholding."""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np

FEATURES = ("contrib",)
_I32_MAX = 2**31 - 1


@lru_cache(maxsize=1)
def opendp() -> Any:
    """The OpenDP prelude with the features we use enabled (once per process)."""
    import opendp.prelude as dp

    for f in FEATURES:
        dp.enable_features(f)
    return dp


def manifest_entry() -> dict[str, Any]:
    """What manifest.json records about OpenDP: version and the feature flags enabled."""
    return {"version": metadata.version("opendp"), "features": list(FEATURES)}


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """Scale of discrete Laplace noise giving epsilon-DP for this L1 sensitivity."""
    return sensitivity / epsilon


def gaussian_scale(sensitivity: float, rho: float) -> float:
    """Sigma of discrete Gaussian noise giving rho-zCDP for this L2 sensitivity."""
    return sensitivity / math.sqrt(2.0 * rho)


def accuracy_95(mechanism: str, scale: float) -> float:
    """Half-width of the interval holding the true cell value with 95% probability (per cell)."""
    dp = opendp()
    if mechanism == "gaussian":
        return float(dp.discrete_gaussian_scale_to_accuracy(scale, 0.05))
    return float(dp.discrete_laplacian_scale_to_accuracy(scale, 0.05))


def vector_measurement(mechanism: str, scale: float) -> Any:
    """An OpenDP measurement adding integer noise to every entry of an integer vector."""
    dp = opendp()
    if mechanism == "gaussian":
        space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
        return space >> dp.m.then_gaussian(scale)
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    return space >> dp.m.then_laplace(scale)


def privacy_loss(mechanism: str, scale: float, sensitivity: int) -> float:
    """Epsilon (laplace) or rho (gaussian) OpenDP's privacy map charges for this sensitivity."""
    return float(vector_measurement(mechanism, scale).map(int(sensitivity)))


def noisy_vector(counts: np.ndarray, mechanism: str, scale: float) -> np.ndarray:
    """Noise an integer vector through OpenDP (one call: vectorized inside OpenDP's sampler)."""
    arr = np.asarray(counts, dtype=np.int64)
    if len(arr) == 0:
        return arr
    if arr.max(initial=0) > _I32_MAX // 2 or arr.min(initial=0) < -_I32_MAX // 2:
        raise ValueError("aggregate too large for 32-bit integer noise")
    out = vector_measurement(mechanism, scale)(arr.astype(np.int32).tolist())
    return np.asarray(out, dtype=np.int64)


def threshold_measurement(scale: float, threshold: int) -> Any:
    """OpenDP's Laplace-threshold on a map of counts: keys seen in the data released only above the threshold."""
    dp = opendp()
    md = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    metric = dp.l01inf_distance(dp.absolute_distance(T=int))
    return dp.m.make_laplace_threshold(md, metric, scale=scale, threshold=int(threshold))


@lru_cache(maxsize=256)
def threshold_for(scale: float, l0: int, l1: int, linf: int, epsilon: float, delta: float) -> int:
    """Smallest threshold at which the thresholded map spends at most (epsilon, delta), delta counted exactly.

    OpenDP's own map leaves out the mass exactly at the threshold (opendp issue 2922); the threshold
    is raised until the exact delta (release.dp.keys.threshold_delta) is within `delta` too.
    """
    from release.dp.keys import exact_threshold

    return exact_threshold(scale, l0, linf, delta, _opendp_threshold_for(scale, l0, l1, linf, epsilon, delta))


def _opendp_threshold_for(scale: float, l0: int, l1: int, linf: int, epsilon: float, delta: float) -> int:
    """Smallest threshold OpenDP's privacy map accepts for (epsilon, delta)."""
    # OpenDP requires threshold >= the l-infinity sensitivity.
    lo, hi = linf, 2 * linf
    while True:
        eps, d = threshold_measurement(scale, hi).map((l0, l1, linf))
        if d <= delta:
            if eps > epsilon * (1 + 1e-9):
                raise ValueError("scale too small for this epsilon")
            break
        lo, hi = hi, hi * 2
        if hi > 1 << 40:
            raise ValueError("no threshold reaches the requested delta")
    while lo < hi:
        mid = (lo + hi) // 2
        if threshold_measurement(scale, mid).map((l0, l1, linf))[1] <= delta:
            hi = mid
        else:
            lo = mid + 1
    return hi


def noisy_threshold(counts: dict[str, int], scale: float, threshold: int) -> dict[str, int]:
    """Release the noisy counts of the keys whose noisy count passes the threshold."""
    if not counts:
        return {}
    return {k: int(v) for k, v in threshold_measurement(scale, threshold)(counts).items()}
