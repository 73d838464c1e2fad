"""Re-identification risk from class sizes: prosecutor, journalist, marketer, sample uniques and
population uniqueness (Pitman, Zayatz, SNB and Dankar's decision rule, as ARX implements them)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy  # submodules load on first use: `release --help` stays fast


def prosecutor(sizes_per_record: np.ndarray, threshold: float) -> dict[str, float]:
    """Risk 1/|class| per record: highest, average (classes / records), share of records above threshold."""
    if len(sizes_per_record) == 0:
        return {"highest": 0.0, "average": 0.0, "share_above": 0.0}
    r = 1.0 / sizes_per_record
    return {"highest": float(r.max()), "average": float(r.mean()), "share_above": float((r > threshold).mean())}


def expected_inverse_population(f: np.ndarray, pi: float) -> np.ndarray:
    """E[1/F | f] when the population class size F is f plus a negative binomial (Benedetti–Franconi,
    the model behind sdcMicro's individual risk); exact sums up to f=50, the bound pi/(f-1) beyond."""
    out = np.empty(len(f))
    for v in np.unique(f):
        v = int(v)
        if pi >= 1:
            r = 1.0 / v
        elif v > 50:
            r = pi / (v - 1)
        else:
            hi = int(scipy.stats.nbinom.ppf(1 - 1e-12, v, pi)) + 1
            j = np.arange(hi + 1)
            r = float((scipy.stats.nbinom.pmf(j, v, pi) / (v + j)).sum())
        out[f == v] = r
    return out


def journalist(sizes_per_record: np.ndarray, threshold: float, pi: float | None) -> dict[str, float]:
    """Without a population model the published file is its own population: journalist = prosecutor."""
    if pi is None or len(sizes_per_record) == 0:
        return prosecutor(sizes_per_record, threshold)
    r = expected_inverse_population(sizes_per_record.astype(np.int64), pi)
    return {"highest": float(r.max()), "average": float(r.mean()), "share_above": float((r > threshold).mean())}


def histogram(class_sizes: np.ndarray) -> dict[int, int]:
    s, c = np.unique(class_sizes.astype(np.int64), return_counts=True)
    return {int(a): int(b) for a, b in zip(s, c, strict=True)}


def zayatz(hist: dict[int, int], n: int, population: int) -> float:
    c1 = hist.get(1, 0)
    if c1 == 0:
        return 0.0
    classes = sum(hist.values())
    temp = sum(cnt / classes * scipy.stats.hypergeom.pmf(1, population, size, n) for size, cnt in hist.items())
    cond = (c1 / classes * scipy.stats.hypergeom.pmf(1, population, 1, n)) / temp
    return float(c1 * cond / (n / population))


def pitman(hist: dict[int, int], n: int, population: int) -> float:
    """Hoshino's Pitman model: maximum-likelihood (theta, alpha), uniques = G(t+1)/G(t+a) N^a."""
    c1 = hist.get(1, 0)
    if c1 == 0:
        return 0.0
    u = sum(hist.values())
    c2 = hist.get(2, 0) or 1
    c = c1 * (c1 - 1) / c2
    denom = (2 * c1 * u + c1 * c) - n * c
    t0 = (n * u * c - c1 * (n - 1) * (2 * u + c)) / denom if denom else 1.0
    a0 = (t0 * (c1 - n) + (n - 1) * c1) / (n * u)
    sizes = np.array([s for s in hist if s > 1], dtype=float)
    counts = np.array([hist[int(s)] for s in sizes], dtype=float)

    def eqs(x: np.ndarray) -> list[float]:
        t, a = x
        if a <= 0 or a >= 1 or t <= -a:
            return [1e6, 1e6]
        s1 = (scipy.special.digamma(t / a + u) - scipy.special.digamma(t / a + 1)) / a
        o1 = s1 - (scipy.special.digamma(t + n) - scipy.special.digamma(t + 1))
        o3 = ((u - 1) - t * s1) / a
        o4 = float((counts * (scipy.special.digamma(sizes - a) - scipy.special.digamma(1 - a))).sum())
        return [float(o1), float(o3 - o4)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        starts = [(t0, a0)] if 0 < a0 < 1 and t0 > -a0 else []
        starts += [(max(t0, 1.0), 0.5), (1.0, 0.5), (10.0, 0.3)]
        for start in starts:
            sol = scipy.optimize.root(eqs, np.asarray(start, dtype=float), method="hybr")
            t, a = sol.x
            if sol.success and 0 < a < 1 and t > -a:
                val = math.exp(scipy.special.gammaln(t + 1) - scipy.special.gammaln(t + a) + a * math.log(population))
                if 0 <= val <= population:
                    return float(val)
    return float("nan")


def snb(hist: dict[int, int], n: int, population: int) -> float:
    """Chen and Keller-McNulty's shifted negative binomial model (ARX's formulation)."""
    c1 = hist.get(1, 0)
    if c1 == 0:
        return 0.0
    c2 = hist.get(2, 0)
    f = n / population
    u = sum(hist.values())
    v1 = v2 = v3 = v4 = 0.0
    for size, cnt in hist.items():
        val2 = (1 - f) ** size * cnt
        v1 += size * f * f * (1 - f * f) ** (size - 1) * cnt
        v2 += val2 * (1 + f) ** size - 1
        v3 += val2
        v4 += size * f * (1 - f) ** (size - 1) * cnt
    big_k = u + c1 * (v1 / v2) * (v3 / v4) ** 2 if v2 and v4 else float(u)

    def eqs(x: np.ndarray) -> list[float]:
        a, b = x
        if a <= 0 or not 0 < b < 1:
            return [1e6, 1e6]
        d = (1 - f) * (1 - b)
        e1 = big_k * f * (b / (1 - d)) ** a * (a * d / (1 - d) + 1) - c1
        e2 = big_k * a * b ** a * f * f * (1 - b) / 2 / (1 - d) ** (a + 2) * (2 - (1 - a) * d) - c2
        return [e1, e2]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in ((1.0, 0.5), (0.5, 0.1), (2.0, 0.9), (0.1, 0.01)):
            sol = scipy.optimize.root(eqs, np.asarray(start), method="hybr")
            a, b = sol.x
            if sol.success and a > 0 and 0 < b < 1:
                val = big_k * b ** a
                if 0 <= val <= population:
                    return float(val)
    return float("nan")


def population_uniqueness(class_sizes: np.ndarray, population: int) -> dict[str, Any]:
    """Estimated population uniques by each model and by Dankar et al.'s decision rule."""
    n = int(class_sizes.sum())
    hist = histogram(class_sizes)
    pi = n / population
    est = {"pitman": pitman(hist, n, population), "zayatz": zayatz(hist, n, population),
           "snb": snb(hist, n, population)}

    def valid(v: float) -> bool:
        return not math.isnan(v) and v != 0

    if hist.get(1, 0) == 0:
        chosen, value = "none (no sample uniques)", 0.0
    elif pi <= 0.1:
        chosen, value = ("pitman", est["pitman"]) if valid(est["pitman"]) else ("zayatz", est["zayatz"])
    elif valid(est["snb"]):
        chosen, value = ("zayatz", est["zayatz"]) if est["zayatz"] < est["snb"] else ("snb", est["snb"])
    else:
        chosen, value = "zayatz", est["zayatz"]
    clean = {k: (None if math.isnan(v) else round(v, 3)) for k, v in est.items()}
    value = 0.0 if math.isnan(value) else value
    return {"sampling_fraction": round(pi, 6), "population_size": int(population), "estimates": clean,
            "dankar_model": chosen, "uniques": round(value, 3), "share": round(value / population, 9)}
