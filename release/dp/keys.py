"""Key sets of DP tables: public keys declared in the policy (zeros released) or keys found by a DP threshold."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from release.policy.base import Schema, StrictModel

SEP = "\x1f"  # joins the values of a multi-column key; never occurs in published categories


class MonthRange(StrictModel):
    """Every calendar month from `from` to `to` (labels YYYY-MM, as `generalize time: month` writes them)."""

    from_: str = Field(alias="from", pattern=r"^\d{4}-\d{2}$")
    "First month (YYYY-MM)."
    to: str = Field(pattern=r"^\d{4}-\d{2}$")
    "Last month (YYYY-MM)."

    @model_validator(mode="after")
    def _order(self) -> MonthRange:
        if self.to < self.from_:
            raise ValueError("`to` must not be before `from`")
        return self

    def labels(self) -> list[str]:
        return [str(p) for p in pd.period_range(self.from_, self.to, freq="M")]


KeySpec = tuple[str, ...] | Literal["categories", "discover"] | MonthRange
"""A column's key set: explicit values, the column's declared categories, a month range, or 'discover'."""


def public_keys(spec: Any, column: str, schema: Schema) -> list[str] | None:
    """The public key list of a column, or None when its keys are discovered from the data."""
    if spec == "discover":
        return None
    if spec == "categories":
        cats = schema[column].categories if column in schema else None
        if not cats:
            raise ValueError(f"keys of {column!r}: 'categories' needs `categories:` declared on the input column")
        return [str(c) for c in cats]
    if isinstance(spec, MonthRange):
        return spec.labels()
    vals = [str(v) for v in spec]
    if len(set(vals)) != len(vals):
        raise ValueError(f"keys of {column!r} repeat a value")
    return vals


def as_text(values: pd.Series) -> pd.Series:
    """Column values as the text keys are written in (booleans 'true'/'false' as in the published CSV)."""
    if pd.api.types.is_bool_dtype(values):
        return values.map({True: "true", False: "false"})
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        return values
    return values.astype("string")


def column_codes(values: pd.Series, keys: list[str]) -> np.ndarray:
    """Position of each value in the key list, -1 when outside it (or null)."""
    # Factorize once, then look up only the distinct values in the key set.
    text = as_text(values)
    if isinstance(text.dtype, pd.CategoricalDtype):
        vals, uniq = pd.factorize(text, use_na_sentinel=True)
    else:
        # The bare object array (no copy for pandas' NumPy-backed strings): factorizing it skips
        # the string array's NA-normalizing copy, half the cost; nulls still get the -1 sentinel.
        vals, uniq = pd.factorize(np.asarray(text.array, dtype=object), use_na_sentinel=True)
    pos = np.r_[pd.Index(keys, dtype=object).get_indexer(pd.Index(uniq, dtype=object)), -1].astype(np.int64)
    return pos[vals]


def combine_codes(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Row-major flat cell index from per-column codes; -1 where any column is outside its key set."""
    flat = np.zeros(len(codes[0]) if codes else 0, dtype=np.int64)
    outside = np.zeros(len(flat), dtype=bool)
    for c, k in zip(codes, sizes, strict=True):
        outside |= c < 0
        flat = flat * k + c
    flat[outside] = -1
    return flat


def grid_codes(frame: pd.DataFrame, by: list[str], keys: list[list[str]]) -> np.ndarray:
    """Flat cell index of each row in the full key grid (row-major), -1 where a value is outside its key set.

    A value outside the public key set never creates a key: its row counts nowhere.
    """
    return combine_codes([column_codes(frame[c], ks) for c, ks in zip(by, keys, strict=True)],
                         [len(ks) for ks in keys])


def grid_frame(by: list[str], keys: list[list[str]]) -> pd.DataFrame:
    """Every key combination in row-major order (the order of `grid_codes`)."""
    if not by:
        return pd.DataFrame(index=range(1))
    idx = pd.MultiIndex.from_product(keys, names=by)
    return idx.to_frame(index=False).astype(object)


def joint_keys(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    """One text key per row joining its values of `by` (for thresholded key discovery)."""
    parts = [as_text(frame[c]).astype(object).fillna("") for c in by]
    out = parts[0].astype(str)
    for p in parts[1:]:
        out = out + SEP + p.astype(str)
    return out


def split_keys(keys: list[str], by: list[str]) -> pd.DataFrame:
    rows = [k.split(SEP) for k in keys]
    return pd.DataFrame(rows, columns=by, dtype=object) if rows else pd.DataFrame({c: [] for c in by}, dtype=object)


# -- the delta of thresholded key discovery, exactly ------------------------------------------------------------
#
# OpenDP 0.16's make_laplace_threshold releases a key when its noisy count is AT OR ABOVE the threshold, but
# its privacy map counts only the mass strictly above it (upstream opendp issue 2922): the declared delta is
# too small by a factor up to exp(1/scale). The functions below compute the real one from the discrete
# Laplace distribution itself.


def discrete_laplace_tail(scale: float, m: int) -> float:
    """P[Z >= m] for Z discrete Laplace with this scale (pmf (1-a)/(1+a) * a^|k|, a = exp(-1/scale)).

    For m >= 0 the sum of the pmf from m to infinity is a^m / (1 + a): the mass AT m is included.
    """
    import math

    if m <= 0:
        # 1 - P[Z >= 1 - m] by symmetry (P[Z <= m - 1] = P[Z >= 1 - m]).
        return 1.0 - discrete_laplace_tail(scale, 1 - m)
    return math.exp(-m / scale) / (1.0 + math.exp(-1.0 / scale))


def threshold_delta(scale: float, threshold: int, l0: int, linf: int) -> float:
    """Exact delta of releasing keys whose noisy count is >= threshold, for one privacy unit that can create at
    most `l0` keys with at most `linf` records each: the chance that any of them is released,
    1 - (1 - P[linf + Z >= threshold])^l0, the mass at the threshold included."""
    import math

    p = discrete_laplace_tail(scale, int(threshold) - int(linf))
    if p >= 1.0:
        return 1.0
    return -math.expm1(l0 * math.log1p(-p))


def exact_threshold(scale: float, l0: int, linf: int, delta: float, least: int) -> int:
    """Smallest threshold >= least whose exact delta is at most `delta`."""
    import math

    if not 0 < delta < 1:
        raise ValueError("delta must lie strictly between 0 and 1")
    # Closed form for a first guess, then step to the exact smallest threshold (floating point at the edges).
    p = -math.expm1(math.log1p(-delta) / l0)
    a = math.exp(-1.0 / scale)
    m = math.ceil(-scale * math.log(p * (1 + a)))
    t = max(int(least), int(linf) + max(m, 1))
    while t > least and threshold_delta(scale, t - 1, l0, linf) <= delta:
        t -= 1
    while threshold_delta(scale, t, l0, linf) > delta:
        t += 1
    return t
