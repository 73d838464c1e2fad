"""The index arithmetic: disproportionality and disparity with intervals that account for the protection.

A *quantity* is one published figure an index divides (events of a group, events of all groups,
benchmark of a group, ...). It carries its published point value and what the protection lets a
reader say about the true value: nothing more (exact), an interval (cell suppression: the LP
attacker's bounds), or a sampling distribution (differential privacy: replicates of the published
noise). Indices are computed from quantities only, so the run, `release check` and the coverage
tests share one code path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Method = Literal["exact", "lp-bounds", "dp-simulation"]
LEVEL = 0.95
DIGITS = 6
"Indices and bounds are published rounded to this many decimals (the check compares them exactly)."


@dataclass(frozen=True)
class Quantity:
    """A published figure and what is known of its true value."""

    point: float
    "The published value (NaN when the cell is suppressed or blanked)."
    lower: float
    "Smallest value the true figure can take (LP bound; the point itself when exact)."
    upper: float
    "Largest value (inf when unbounded)."
    samples: np.ndarray | None = None
    "Replicates (published value plus simulated noise, clipped at 0), for DP figures."
    raw: np.ndarray | None = None
    "The same replicates before clipping: decide whether the figure is drowned in its noise."

    @property
    def exact(self) -> bool:
        return self.samples is None and self.lower == self.upper == self.point

    @property
    def bounded(self) -> bool:
        return self.samples is None and not self.exact


def exact(v: float) -> Quantity:
    return Quantity(float(v), float(v), float(v))


def drowned(q: Quantity) -> bool:
    """A denominator is drowned when it may be zero: its lower bound (or its noise's 2.5% quantile) is <= 0."""
    if q.samples is not None:
        assert q.raw is not None
        # The 2.5% quantile of the replicates is <= 0 exactly when more than 2.5% of them are.
        tail = np.count_nonzero(q.raw <= 0) > (1 - LEVEL) / 2 * (len(q.raw) - 1)
        return bool(np.isnan(q.point) or q.point <= 0 or tail)
    return not (q.lower > 0)


@dataclass(frozen=True)
class Index:
    """One published row: the index, its interval, the method and, when unusable, why."""

    value: float | None
    lower: float | None
    upper: float | None
    method: Method
    flag: str


def _method(qs: list[Quantity]) -> Method:
    if any(q.bounded for q in qs):
        return "lp-bounds"
    if any(q.samples is not None for q in qs):
        return "dp-simulation"
    return "exact"


def _r(x: float) -> float | None:
    if x is None or np.isnan(x) or np.isinf(x):
        return None
    return round(float(x), DIGITS)


def _lohi(q: Quantity) -> tuple[float, float]:
    """Bounds used by the interval arithmetic: LP bounds, or the DP figure's central 95% when mixed in."""
    if q.samples is not None:
        a = (1 - LEVEL) / 2
        return float(np.quantile(q.samples, a)), float(np.quantile(q.samples, 1 - a))
    return q.lower, q.upper


def _samples(q: Quantity, n: int) -> np.ndarray:
    return q.samples if q.samples is not None else np.full(n, q.point)


def _corners(num: list[tuple[float, float]], den: list[tuple[float, float]]) -> tuple[float, float]:
    """Bounds of prod(num)/prod(den) for non-negative figures within bounds: monotone, so at the corners."""
    lo = float(np.prod([a for a, _ in num]) / np.prod([b for _, b in den]))
    hi = float(np.prod([b for _, b in num]) / np.prod([a for a, _ in den]))
    return lo, hi


def _share(part: tuple[float, float], whole: tuple[float, float]) -> tuple[float, float]:
    """Bounds of part/whole when the part is contained in the whole (a share never exceeds 1)."""
    (pl, ph), (wl, wh) = part, whole
    return pl / max(wh, pl) if wh > 0 else 0.0, min(1.0, ph / wl) if wl > 0 else np.inf


def ratio_index(num: list[Quantity], den: list[Quantity],
                bounds: Callable[[list[tuple[float, float]]], tuple[float, float]] | None = None) -> Index:
    """prod(num) / prod(den) with its interval; num and den are non-negative figures.

    `bounds` maps the (lower, upper) of num+den to the index's bounds when the arithmetic can do
    better than the corners (a group's events are part of all events).
    """
    qs = num + den
    method = _method(qs)
    if any(drowned(q) for q in den):
        what = "drowned in its noise" if method == "dp-simulation" else "zero, negative or suppressed to zero"
        return Index(None, 0.0, None, method, f"unbounded: a denominator may be {what}")
    point_known = all(not np.isnan(q.point) for q in qs)
    value = float(np.prod([q.point for q in num]) / np.prod([q.point for q in den])) if point_known else np.nan
    if method == "exact":
        return Index(_r(value), _r(value), _r(value), method, "")
    if method == "dp-simulation":
        n = max(len(q.samples) for q in qs if q.samples is not None)  # type: ignore[arg-type]
        top = np.prod([_samples(q, n) for q in num], axis=0)
        bottom = np.prod([_samples(q, n) for q in den], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.inf)
        a = (1 - LEVEL) / 2
        lo, hi = np.quantile(reps, [a, 1 - a])
        flag = "" if np.isfinite(hi) else "unbounded above: a replicate's denominator is zero"
        return Index(_r(value), _r(lo), _r(hi), method, flag)
    lims = [_lohi(q) for q in qs]
    lo, hi = bounds(lims) if bounds else _corners(lims[:len(num)], lims[len(num):])
    flag = "" if point_known else "bounds only: a figure it uses is suppressed"
    if not np.isfinite(hi):
        flag = (flag + "; " if flag else "") + "unbounded above: a suppressed cell has no upper bound"
    return Index(_r(value), _r(lo), _r(hi), method, flag)


def disproportionality(e_g: Quantity, e_all: Quantity, b_g: Quantity, b_all: Quantity) -> Index:
    """(events of the group / all events) / (benchmark of the group / whole benchmark)."""

    def bounds(lims: list[tuple[float, float]]) -> tuple[float, float]:
        (eg, ball, eall, bg) = lims
        se, sb = _share(eg, eall), _share(bg, ball)
        return se[0] / sb[1] if sb[1] > 0 else 0.0, se[1] / sb[0] if sb[0] > 0 else np.inf

    return ratio_index([e_g, b_all], [e_all, b_g], bounds)


def disparity(e_g: Quantity, b_g: Quantity, e_ref: Quantity, b_ref: Quantity) -> Index:
    """(events per benchmark member in the group) / (the same rate in the reference group)."""
    return ratio_index([e_g, b_ref], [b_g, e_ref])


def seed_of(parts: list[tuple[str, bytes]]) -> int:
    """The simulation's seed: a hash of the published bytes it post-processes (named, in name order)."""
    h = hashlib.sha256()
    for name, data in sorted(parts):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return int.from_bytes(h.digest()[:8], "big")


class Sampler(Protocol):
    """What the interval simulation draws from (HashStream in releases; any NumPy Generator in tests)."""

    def normal(self, loc: float, scale: float, size: tuple[int, ...]) -> np.ndarray: ...

    def geometric(self, p: float, size: tuple[int, ...]) -> np.ndarray: ...


class HashStream:
    """A reproducible stream keyed by the hash of the published tables (SHAKE-256 blocks, in order).

    Post-processing of public figures only: this randomness protects nothing (the noise that
    protects was drawn by OpenDP at release time); it is a function of the bundle's bytes so that
    `release check` recomputes every interval exactly.
    """

    def __init__(self, seed: int) -> None:
        self._key = seed.to_bytes(8, "big")
        self._block = 0

    def uniform(self, n: int) -> np.ndarray:
        """n floats in [0, 1), each an exact multiple of 2**-53."""
        raw = hashlib.shake_256(b"release-indices\0" + self._key + self._block.to_bytes(8, "big")).digest(8 * n)
        self._block += 1
        return (np.frombuffer(raw, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)

    def normal(self, loc: float, scale: float, size: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(size))
        u1, u2 = 1.0 - self.uniform(n), self.uniform(n)  # Box–Muller; 1 - U lies in (0, 1]
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return (loc + scale * z).reshape(size)

    def geometric(self, p: float, size: tuple[int, ...]) -> np.ndarray:
        """Trials to the first success (support 1, 2, ...), by inverting the geometric CDF."""
        u = 1.0 - self.uniform(int(np.prod(size)))
        return (np.floor(np.log(u) / np.log1p(-p)) + 1.0).reshape(size)


def noise_replicates(rng: Sampler, shape: tuple[int, ...], mechanism: str, scale: float) -> np.ndarray:
    """Integer noise with the published mechanism's distribution (discrete Laplace or Gaussian)."""
    if "gaussian" in mechanism:
        return np.rint(rng.normal(0.0, scale, size=shape))
    # Discrete Laplace(b) is the difference of two i.i.d. geometric variables with p = 1 - exp(-1/b).
    p = -np.expm1(-1.0 / scale)
    return (rng.geometric(p, size=shape) - rng.geometric(p, size=shape)).astype(float)
