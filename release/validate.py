"""Validate internal records against the policy's declared schema; collect every failure."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from release.errors import InputError
from release.policy.base import ColumnSpec, ColumnType, Role
from release.policy.models import Policy

MAX_ROWS_SHOWN = 20
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class Violation:
    """One rule broken: which rule, which column, which rows (1-based data rows; never values)."""

    rule: str
    column: str | None
    rows: np.ndarray
    "The first rows breaking the rule (ascending; at most MAX_ROWS_SHOWN are kept once merged)."
    message: str
    count: int | None = None
    "How many rows break it (None: len(rows))."
    order: tuple[int, ...] = ()
    "Where the rule sits in the order of checks, so merged batches list violations as one pass would."

    @property
    def n(self) -> int:
        return int(len(self.rows)) if self.count is None else int(self.count)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "column": self.column, "count": self.n,
                "rows": [int(r) for r in self.rows[:MAX_ROWS_SHOWN]], "message": self.message}

    def render(self) -> str:
        shown = ", ".join(str(int(r)) for r in self.rows[:MAX_ROWS_SHOWN])
        more = f" and {self.n - MAX_ROWS_SHOWN} more" if self.n > MAX_ROWS_SHOWN else ""
        where = f" column {self.column!r}:" if self.column else ""
        rows = f" rows {shown}{more}" if self.n else ""
        return f"[{self.rule}]{where} {self.message}" + (f" ({self.n}):{rows}" if self.n else "")

    def merged(self, other: Violation) -> Violation:
        rows = np.sort(np.concatenate([self.rows, other.rows]))[:MAX_ROWS_SHOWN]
        return Violation(self.rule, self.column, rows, self.message, self.n + other.n, self.order)


@dataclass
class ValidationReport:
    rows_read: int
    violations: list[Violation] = field(default_factory=list)
    rows_excluded: int = 0
    coordinates_missing: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"rows_read": self.rows_read, "rows_excluded": self.rows_excluded,
                "coordinates_missing": self.coordinates_missing,
                "violations": [v.to_json() for v in self.violations]}


def merge_reports(a: ValidationReport, b: ValidationReport) -> ValidationReport:
    """The report of two batches' rows together (violations in check order, whatever the batch order)."""
    by: dict[tuple[Any, ...], Violation] = {}
    for x in [*a.violations, *b.violations]:
        k = (x.order, x.rule, x.column, x.message)
        by[k] = by[k].merged(x) if k in by else Violation(x.rule, x.column, np.sort(x.rows)[:MAX_ROWS_SHOWN],
                                                          x.message, x.n, x.order)
    return ValidationReport(rows_read=a.rows_read + b.rows_read,
                            violations=[by[k] for k in sorted(by, key=lambda k: k[0])],
                            rows_excluded=a.rows_excluded + b.rows_excluded,
                            coordinates_missing=a.coordinates_missing + b.coordinates_missing)


def _rows(mask: np.ndarray, rn: np.ndarray | None = None) -> np.ndarray:
    """Input row numbers (1-based data rows) of the rows a mask marks; `rn` numbers a batch's rows."""
    if rn is None:
        return np.flatnonzero(mask) + 1
    return rn[np.asarray(mask, dtype=bool)]


def _convert(col: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, np.ndarray]:
    """Convert one column to its declared type; return it and the mask of unreadable values."""
    present = col.notna().to_numpy()
    t = spec.type
    if t in (ColumnType.string, ColumnType.category):
        if isinstance(col.dtype, pd.StringDtype) and col.dtype.storage == "pyarrow":
            # Arrow's kernel strips a million values at once, and the text stays in Arrow memory.
            stripped = pc.utf8_trim_whitespace(pa.chunked_array(col.array._pa_array))  # noqa: SLF001
            return pd.Series(pd.arrays.ArrowStringArray(stripped), index=col.index), np.zeros(len(col), dtype=bool)
        return col.astype("string").str.strip(), np.zeros(len(col), dtype=bool)
    if t in (ColumnType.integer, ColumnType.float):
        num = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col) else col
        arr = num.to_numpy(dtype=float, na_value=np.nan)
        bad = present & (np.isnan(arr) | np.isinf(arr))
        if t == ColumnType.integer:
            frac = present & ~bad & (np.mod(np.where(np.isnan(arr), 0, arr), 1) != 0)
            bad |= frac
            arr = np.where(bad, np.nan, arr)
            return pd.Series(pd.array(np.where(np.isnan(arr), 0, arr).astype("int64"), dtype="Int64"),
                             index=col.index).mask(np.isnan(arr)), bad
        return pd.Series(np.where(bad, np.nan, arr), index=col.index, dtype="float64"), bad
    if t == ColumnType.boolean:
        if pd.api.types.is_bool_dtype(col):
            return col.astype("boolean"), np.zeros(len(col), dtype=bool)
        low = col.astype("string").str.strip().str.lower()
        is_t = low.isin(list(_TRUE)).fillna(False).to_numpy(dtype=bool)
        is_f = low.isin(list(_FALSE)).fillna(False).to_numpy(dtype=bool)
        bad = present & ~is_t & ~is_f
        out = pd.array(np.where(is_t, True, False), dtype="boolean")
        out[~(is_t | is_f)] = pd.NA
        return pd.Series(out, index=col.index), bad
    # datetime / date
    if pd.api.types.is_datetime64_any_dtype(col):
        dt = col
    else:
        fmt = spec.format or "ISO8601"
        dt = pd.to_datetime(col, errors="coerce", format=fmt)
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_convert(None)
    bad = present & dt.isna().to_numpy()
    if t == ColumnType.date:
        dt = dt.dt.normalize()
    return dt.astype("datetime64[ns]"), bad


def check_columns(columns: list[str], policy: Policy) -> list[Violation]:
    """Declared columns absent from the input, and undeclared ones (unless allowed): fatal with any other rule."""
    schema = policy.input.columns
    v: list[Violation] = []
    missing = [c for c in schema if c not in columns]
    extra = [c for c in columns if c not in schema]
    for c in missing:
        v.append(Violation("missing-column", c, np.array([], dtype=int), "declared in the policy but absent from the input",
                           order=(0, list(schema).index(c))))
    if extra and not policy.input.allow_extra_columns:
        positions = {c: i + 1 for i, c in enumerate(columns)}
        for c in extra:
            # An undeclared header name is not echoed (the "header" may be a data row): its position
            # is, with the declared column it most resembles.
            near = difflib.get_close_matches(str(c), missing, n=1, cutoff=0.5) or \
                difflib.get_close_matches(str(c), list(schema), n=1, cutoff=0.8)
            hint = f"; did you mean {near[0]!r}?" if near else " (renamed or new column?)"
            v.append(Violation("unexpected-column", f"#{positions[c]}", np.array([], dtype=int),
                               f"input column {positions[c]} is not declared in the policy" + hint,
                               order=(0, len(schema) + positions[c])))
    return v


def check_empty(rows: int, policy: Policy, source: str) -> None:
    if rows == 0 and not policy.input.allow_empty:
        raise InputError(f"{source}: the input holds no record (a header only, or zero rows) [rule: empty-input];"
                         " nothing was published (set input.allow_empty: true to publish an empty release)")


def raise_if_refused(report: ValidationReport, policy: Policy, source: str) -> None:
    """Stop the run, listing every rule broken, when the policy refuses invalid input (or columns are wrong)."""
    v = report.violations
    fatal = any(x.rule in ("missing-column", "unexpected-column") for x in v)
    if v and (fatal or policy.input.on_invalid == "refuse"):
        raise InputError(f"{source}: {len(v)} rule(s) broken by the input records; nothing was published",
                         details=[x.render() for x in v])


def validate_records(raw: pd.DataFrame, policy: Policy, now: datetime, source: str) -> tuple[pd.DataFrame, ValidationReport]:
    """Check every row; return typed records, or raise InputError listing every rule broken."""
    check_empty(len(raw), policy, source)
    frame, report = validate_batch(raw, policy, now, None, duplicates=True)
    report.violations = sorted([*check_columns(list(raw.columns), policy), *report.violations],
                               key=lambda x: x.order)
    raise_if_refused(report, policy, source)
    return frame, report


def typed_ids(raw: pd.DataFrame, policy: Policy) -> pd.Series | None:
    """The record-id column converted as validation converts it (for the uniqueness rule over batches)."""
    rid = policy.input.record_id
    if rid not in raw.columns or rid not in policy.input.columns:
        return None
    return _convert(raw[rid], policy.input.columns[rid])[0]


def validate_batch(raw: pd.DataFrame, policy: Policy, now: datetime, rn: np.ndarray | None, *,
                   duplicates: bool = False, exclude_rows: np.ndarray | None = None
                   ) -> tuple[pd.DataFrame, ValidationReport]:
    """Check and convert the rows of one batch; invalid rows are left out and reported (rows, never values).

    `rn` numbers the batch's rows in the whole input (None: 1..n). The record-id uniqueness rule
    needs every batch: `duplicates` checks it within this batch (the batch is the whole input),
    else `exclude_rows` lists the input rows found duplicated over all batches.
    """
    schema = policy.input.columns
    report = ValidationReport(rows_read=int(len(raw)))
    v = report.violations
    typed: dict[str, pd.Series] = {}
    bad_rows = _check_text(raw, schema, policy.input.max_field_length, v, rn)
    names = list(schema)
    for name, spec in schema.items():
        if name not in raw.columns:
            continue
        ci = names.index(name)
        col, bad = _convert(raw[name], spec)
        if bad.any():
            v.append(Violation("type", name, _rows(bad, rn), f"value not readable as {spec.type.value}", order=(2, ci, 0)))
        typed[name] = col
        bad_rows |= bad
        isna = col.isna().to_numpy() & ~bad
        if spec.required and spec.role not in (Role.latitude, Role.longitude) and isna.any():
            v.append(Violation("required", name, _rows(isna, rn), "missing value in a required column", order=(2, ci, 1)))
            bad_rows |= isna
        if spec.categories is not None:
            notin = (~col.isin(list(spec.categories)).fillna(False).to_numpy(dtype=bool)) & col.notna().to_numpy()
            if notin.any():
                v.append(Violation("category", name, _rows(notin, rn), "value not among the declared categories",
                                   order=(2, ci, 2)))
                bad_rows |= notin
        if spec.type in (ColumnType.integer, ColumnType.float) and (spec.min is not None or spec.max is not None):
            arr = col.to_numpy(dtype=float, na_value=np.nan)
            out = np.zeros(len(arr), dtype=bool)
            if spec.min is not None:
                out |= arr < spec.min
            if spec.max is not None:
                out |= arr > spec.max
            if out.any():
                v.append(Violation("range", name, _rows(out, rn), f"value outside [{spec.min}, {spec.max}]",
                                   order=(2, ci, 3)))
                bad_rows |= out
        if spec.type in (ColumnType.datetime, ColumnType.date) and not spec.allow_future:
            fut = (col > pd.Timestamp(now.replace(tzinfo=None))).fillna(False).to_numpy(dtype=bool)
            if fut.any():
                v.append(Violation("future-date", name, _rows(fut, rn), "date after the run time", order=(2, ci, 4)))
                bad_rows |= fut
    rid = policy.input.record_id
    if rid in typed:
        if duplicates:
            dup = typed[rid].duplicated(keep=False).to_numpy() & typed[rid].notna().to_numpy()
        elif exclude_rows is not None and len(exclude_rows):
            numbers = np.arange(1, len(raw) + 1) if rn is None else rn
            dup = np.isin(numbers, exclude_rows)
        else:
            dup = np.zeros(len(raw), dtype=bool)
        if dup.any():
            v.append(Violation("duplicate-id", rid, _rows(dup, rn), "record id is not unique", order=(3,)))
            bad_rows |= dup
    lat_c = policy.input.role_columns(Role.latitude)
    lon_c = policy.input.role_columns(Role.longitude)
    if lat_c and lon_c and lat_c[0] in typed and lon_c[0] in typed:
        bad_rows |= _check_coordinates(typed, lat_c[0], lon_c[0], policy, v, report, rn)
    frame = pd.DataFrame(typed, index=raw.index)
    if bad_rows.any():
        report.rows_excluded = int(bad_rows.sum())
        frame = frame.loc[~bad_rows]
    frame = frame.reset_index(drop=True)
    return frame, report


_UNSAFE_RE2 = (r"[\x{0}-\x{8}\x{b}-\x{1f}\x{7f}-\x{9f}\x{61c}\x{202a}-\x{202e}\x{2066}-\x{2069}]")
"UNSAFE_CHARS in RE2 syntax (Arrow's regex engine), with no literal control character in the pattern."


def _arrow_text(col: pd.Series) -> pa.ChunkedArray | pa.Array:
    """A text column as an Arrow string array (zero-copy when the column is Arrow-backed already)."""
    arr = pa.array(col, from_pandas=True) if not isinstance(col.dtype, pd.StringDtype) or \
        col.dtype.storage != "pyarrow" else pa.chunked_array(col.array._pa_array)  # noqa: SLF001
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return arr


def _check_text(raw: pd.DataFrame, schema: dict[str, ColumnSpec], max_len: int, v: list[Violation],
                rn: np.ndarray | None = None) -> np.ndarray:
    """NULs, control characters and over-long fields in text columns: refused, located, never shown.

    The checks run in Arrow's string kernels (a million values in milliseconds, not Python calls).
    """
    any_bad = np.zeros(len(raw), dtype=bool)
    for ci, name in enumerate(schema):
        if name not in raw.columns:
            continue
        col = raw[name]
        if not (pd.api.types.is_string_dtype(col) or col.dtype == object):
            continue
        try:
            arr = _arrow_text(col)
        except (pa.ArrowException, TypeError):
            arr = _arrow_text(col.astype("string"))
        nul = pc.match_substring(arr, "\x00")
        for ri, (rule, mask, msg) in enumerate((
            ("nul-byte", nul, "value holds a NUL byte"),
            ("control-character", pc.and_(pc.match_substring_regex(arr, _UNSAFE_RE2), pc.invert(nul)),
             "value holds a control character, escape sequence or bidi override"),
            ("field-length", pc.greater(pc.utf8_length(arr), max_len), f"value longer than {max_len:,} characters"),
        )):
            bad = pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
            if bad.any():
                v.append(Violation(rule, name, _rows(bad, rn), msg, order=(1, ci, ri)))
                any_bad |= bad
    return any_bad


def _check_coordinates(typed: dict[str, pd.Series], lat_c: str, lon_c: str, policy: Policy,
                       v: list[Violation], report: ValidationReport, rn: np.ndarray | None = None) -> np.ndarray:
    lat = typed[lat_c].to_numpy(dtype=float, na_value=np.nan)
    lon = typed[lon_c].to_numpy(dtype=float, na_value=np.nan)
    j = policy.jurisdiction
    min_lon, min_lat, max_lon, max_lat = j.bbox
    bad = np.zeros(len(lat), dtype=bool)
    zero = (lat == 0) & (lon == 0)
    if j.zero_is_missing and zero.any():
        lat = np.where(zero, np.nan, lat)
        lon = np.where(zero, np.nan, lon)
        typed[lat_c] = pd.Series(lat, index=typed[lat_c].index)
        typed[lon_c] = pd.Series(lon, index=typed[lon_c].index)
    half = np.isnan(lat) != np.isnan(lon)
    if half.any():
        v.append(Violation("coordinate-pair", f"{lat_c}/{lon_c}", _rows(half, rn), "only one of latitude and longitude given", order=(4, 0)))
        bad |= half
    have = ~np.isnan(lat) & ~np.isnan(lon)
    report.coordinates_missing = int((~have).sum())
    impossible_lat = have & (np.abs(lat) > 90)
    impossible_lon = have & (np.abs(lon) > 180)
    inside = have & (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon)
    swapped = have & ~inside & (lon >= min_lat) & (lon <= max_lat) & (lat >= min_lon) & (lat <= max_lon)
    if swapped.any():
        v.append(Violation("swapped-lat-lon", f"{lat_c}/{lon_c}", _rows(swapped, rn),
                           "latitude and longitude appear swapped", order=(4, 1)))
    rest_lat = impossible_lat & ~swapped
    if rest_lat.any():
        v.append(Violation("latitude-range", lat_c, _rows(rest_lat, rn), "latitude outside [-90, 90]", order=(4, 2)))
    rest_lon = impossible_lon & ~swapped & ~impossible_lat
    if rest_lon.any():
        v.append(Violation("longitude-range", lon_c, _rows(rest_lon, rn), "longitude outside [-180, 180]", order=(4, 3)))
    outside = have & ~inside & ~swapped & ~impossible_lat & ~impossible_lon
    if outside.any() and j.outside == "error":
        v.append(Violation("outside-jurisdiction", f"{lat_c}/{lon_c}", _rows(outside, rn),
                           "point outside the jurisdiction's bounding box", order=(4, 4)))
        bad |= outside
    bad |= swapped | impossible_lat | impossible_lon
    return bad
