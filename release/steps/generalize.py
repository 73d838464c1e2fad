"""`generalize`: coarsen one column (time truncation, numeric bins, category hierarchy)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import model_validator

from release.batches import distinct_state, finish_evidence
from release.context import StepContext
from release.policy.base import ColumnSpec, ColumnType, Schema, StepConfig
from release.registry import register_step

TIME_UNITS = ("hour", "day", "week", "month", "quarter", "year")


_NUMPY_UNITS = {"hour": "h", "day": "D", "week": "D", "month": "M"}


def truncate_time(values: pd.Series, unit: str) -> pd.Series:
    """Truncate datetimes to a unit; week starts on Monday, quarter is written 2024-Q1."""
    s = pd.to_datetime(values)
    if unit in _NUMPY_UNITS and getattr(s.dt, "tz", None) is None:
        # NumPy's datetime units and ISO text in C: no Python call per value (the same text as strftime).
        v = s.to_numpy(dtype="datetime64[ns]")
        if unit == "week":
            days = v.astype("datetime64[D]")
            # 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, is the weekday (Monday 0).
            days = days - ((days.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
            txt = np.datetime_as_string(days, unit="D")
        else:
            txt = np.datetime_as_string(v.astype(f"datetime64[{_NUMPY_UNITS[unit]}]"), unit=_NUMPY_UNITS[unit])
            if unit == "hour":
                txt = np.char.add(txt, ":00")
        # Fixed-width NumPy text straight into Arrow (no Python string per value); NaT becomes null.
        import pyarrow as pa

        arr = pa.array(txt, type=pa.string(), mask=np.isnat(v))
        return pd.Series(pd.arrays.ArrowStringArray(arr), index=values.index)
    if unit == "hour":
        return s.dt.floor("h").dt.strftime("%Y-%m-%dT%H:00")
    if unit == "day":
        return s.dt.strftime("%Y-%m-%d")
    if unit == "week":
        return (s.dt.normalize() - pd.to_timedelta(s.dt.weekday, unit="D")).dt.strftime("%Y-%m-%d")
    if unit == "month":
        return s.dt.strftime("%Y-%m")
    if unit == "quarter":
        return s.dt.year.astype("Int64").astype("string") + "-Q" + s.dt.quarter.astype("Int64").astype("string")
    return s.dt.year.astype("Int64").astype("string")


def bin_numbers(values: pd.Series, edges: list[float], labels: list[str] | None = None) -> pd.Series:
    """Bin numbers into [edges[i], edges[i+1]) intervals, labelled 'a-b' (or by `labels`)."""
    e = np.asarray(edges, dtype=float)
    if labels is None:
        labels = [f"{_fmt(e[i])}-{_fmt(e[i + 1])}" for i in range(len(e) - 1)]
    idx = np.searchsorted(e, pd.to_numeric(values).to_numpy(dtype=float, na_value=np.nan), side="right") - 1
    valid = (idx >= 0) & (idx < len(labels)) & ~np.isnan(pd.to_numeric(values).to_numpy(dtype=float, na_value=np.nan))
    lab = np.asarray(labels + [None], dtype=object)
    return pd.Series(lab[np.where(valid, idx, len(labels))], index=values.index, dtype="string")


def _fmt(x: float) -> str:
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else str(x)


@register_step
class GeneralizeStep(StepConfig):
    """Coarsen a column so fewer records share rare values."""

    type: Literal["generalize"] = "generalize"
    row_local: ClassVar[bool] = True
    column: str
    "Column to generalize (replaced in place)."
    time: Literal["hour", "day", "week", "month", "quarter", "year"] | None = None
    "Truncate a datetime/date column to this unit."
    bins: tuple[float, ...] | None = None
    "Bin edges for a numeric column; values outside the edges become null (top/bottom code with -inf/inf)."
    labels: tuple[str, ...] | None = None
    "Labels for the bins (one fewer than the edges)."
    mapping: dict[str, str] | None = None
    "Category hierarchy: value -> parent category."
    unmapped: Literal["error", "keep", "other"] = "error"
    "Values absent from the mapping: refuse the run, keep them, or map to 'Other'."

    @model_validator(mode="after")
    def _one(self) -> GeneralizeStep:
        if sum(x is not None for x in (self.time, self.bins, self.mapping)) != 1:
            raise ValueError("give exactly one of time, bins, mapping")
        if self.bins is not None:
            if len(self.bins) < 2 or list(self.bins) != sorted(self.bins):
                raise ValueError("bins must be at least two increasing edges")
            if self.labels is not None and len(self.labels) != len(self.bins) - 1:
                raise ValueError("labels must number one fewer than bins")
        return self

    def referenced_columns(self) -> list[str]:
        return [self.column]

    def schema_after(self, schema: Schema) -> Schema:
        out = dict(schema)
        old = out[self.column]
        cats = None
        if self.mapping is not None and self.unmapped != "keep":
            cats = tuple(sorted(set(self.mapping.values()) | ({"Other"} if self.unmapped == "other" else set())))
        out[self.column] = ColumnSpec(type=ColumnType.category if cats or self.bins else ColumnType.string,
                                      role=old.role, required=old.required, categories=cats,
                                      description=f"generalized: {self.describe()}")
        return out

    def describe(self) -> str:
        if self.time:
            return f"generalize {self.column} to {self.time}"
        if self.bins:
            return f"generalize {self.column} into {len(self.bins) - 1} bins"
        return f"generalize {self.column} through a {len(self.mapping or {})}-value hierarchy"

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out, ev = self.apply_batch(frame, ctx)
        return out, finish_evidence(ev)

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out = frame.copy()
        col = out[self.column]
        # Distinct counts need every batch: each batch's distinct values, merged, counted once.
        before = distinct_state(col)
        if self.time:
            out[self.column] = truncate_time(col, self.time).astype("string")
        elif self.bins is not None:
            out[self.column] = bin_numbers(col, list(self.bins), list(self.labels) if self.labels else None)
        else:
            mapping = self.mapping or {}
            mapped = col.astype("string").map(mapping)
            missing = col.notna() & mapped.isna()
            if missing.any():
                if self.unmapped == "error":
                    from release.errors import InputError

                    rows = (np.flatnonzero(missing.to_numpy()) + 1)[:20].tolist()
                    raise InputError(f"generalize {self.column}: {int(missing.sum())} value(s) not in the hierarchy",
                                     details=[f"rows {rows}"])
                mapped = mapped.where(~missing, col.astype("string") if self.unmapped == "keep" else "Other")
            out[self.column] = mapped.astype("string")
        return out, {"column": self.column, "distinct_before": before,
                     "distinct_after": distinct_state(out[self.column])}
