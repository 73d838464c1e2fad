"""Published cells safe for spreadsheets: formula neutralisation in CSV, and the bundle check that proves it.

A CSV cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by
spreadsheet programs (`=HYPERLINK(...)`, `+cmd|' /C calc'!A0`). As OWASP recommends, such string
cells get a leading apostrophe in the CSV; Parquet and GeoJSON keep the value (no spreadsheet opens
them). The rule is a bijection: a string that already begins with apostrophes followed by a trigger
gets one more, so `restore_cell` recovers every value exactly and the formats compare equal modulo
this rule (`neutralised_equal`). Numbers are never touched: `-5` in a numeric column is a number.

Control characters and NUL bytes are refused at validation (`release.validate`, rules `nul-byte` and
`control-character`), so they never reach a bundle; `release check` fails a bundle holding either,
or a live formula cell, in any published file.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from release import registry
from release.context import AssessContext, Finding
from release.textsafe import UNSAFE_CHARS

TRIGGERS = "=+-@\t\r"
_NEUTRALISE = r"^'*[=+\-@\t\r]"
_RESTORE = r"^'+[=+\-@\t\r]"
_LIVE = r"^[=+\-@\t\r]"
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:inf|Infinity)$"


def neutralise_cell(value: str) -> str:
    """The CSV text of one string cell: a leading apostrophe when a spreadsheet would run it."""
    return "'" + value if re.match(_NEUTRALISE, value) else value


def restore_cell(value: str) -> str:
    """The published value of one CSV string cell (inverse of `neutralise_cell`)."""
    return value[1:] if re.match(_RESTORE, value) else value


def neutralised_equal(csv_value: Any, raw_value: Any) -> bool:
    """True when a CSV cell is the neutralised form of the same cell in Parquet or GeoJSON."""
    if isinstance(raw_value, str) and isinstance(csv_value, str):
        return csv_value == neutralise_cell(raw_value)
    return bool(csv_value == raw_value)


def _string_cells(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.StringDtype) or s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype)


def neutralise_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A copy with every triggering string cell neutralised, and how many cells were changed."""
    out = frame
    changed = 0
    for c in frame.columns:
        s = frame[c]
        if not _string_cells(s):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        # On object columns `.str` gives NaN for non-strings (numbers stay numbers).
        m = s.str.match(_NEUTRALISE).eq(True)
        n = int(m.sum())
        if n:
            if out is frame:
                out = frame.copy()
            s = s.astype(object)
            s[m.to_numpy()] = "'" + s[m.to_numpy()].astype(str)
            out[c] = s
            changed += n
    return out, changed


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo `neutralise_frame` on a CSV read back as text (the values the other formats hold)."""
    out = frame
    for c in frame.columns:
        s = frame[c]
        if not _string_cells(s):
            continue
        m = s.str.match(_RESTORE).eq(True).fillna(False).to_numpy(dtype=bool)
        if m.any():
            if out is frame:
                out = frame.copy()
            s = s.copy()
            s[m] = s[m].str.slice(1)
            out[c] = s
    return out


_NEUTRALISE_RE2 = r"^'*[=+\-@\t\r]"


def count_neutralised(frame: pd.DataFrame) -> int:
    """Cells of a published table that its CSV carries neutralised (string cells with a trigger)."""
    n = 0
    for c in frame.columns:
        s = frame[c]
        if not _string_cells(s):
            continue
        try:
            arr = pa.array(s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            arr = None
        if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            n += neutralise_frame(frame[[c]])[1]  # mixed objects: pandas' rule cell by cell
            continue
        n += int(pc.sum(pc.match_substring_regex(arr, _NEUTRALISE_RE2)).as_py() or 0)
    return n


# ------------------------------------------------------------------------------ report and bundle check

def neutralised_figure(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """ASSESSORS hook (every output kind): how many CSV cells carry a leading apostrophe."""
    return {"csv_cells_neutralised": int(sum(count_neutralised(t) for t in tables.values()))}


def _csv_text(path: Path) -> pa.Table:
    """A published CSV as text, every cell as written (no null or number conversion)."""
    with open(path, encoding="utf-8", newline="") as f:
        names = next(csv.reader(f), [])
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                             quoted_strings_can_be_null=False, null_values=[]),
    )


def _rows(mask: pa.Array) -> list[int]:
    return [int(i) + 1 for i in pc.indices_nonzero(pc.fill_null(mask, False)).to_numpy()[:10]]


def _control_findings(rel: str, table: pa.Table) -> list[str]:
    out = []
    for name in table.column_names:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        bad = pc.match_substring_regex(col, UNSAFE_CHARS)
        rows = _rows(bad)
        if rows:
            out.append(f"{rel}: column {name!r}: control character or NUL in rows {rows}")
    return out


def cells_bundle_check(policy: Any, bundle: Path, manifest: dict[str, Any], options: dict[str, Any]) -> list[Finding]:
    """BUNDLE_CHECKS hook: no live formula in any CSV cell, no control character or NUL in any published file."""
    try:
        resources = json.loads((bundle / "datapackage.json").read_text(encoding="utf-8"))["resources"]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # reported by the core check
    problems: list[str] = []
    checked = 0
    for r in resources:
        rel = str(r.get("path", ""))
        p = bundle / rel
        if not rel.endswith(".csv") or not p.is_file():
            continue
        checked += 1
        try:
            table = _csv_text(p)
        except (pa.ArrowInvalid, OSError, ValueError):
            problems.append(f"{rel}: not readable as CSV text")
            continue
        types = {f.get("name"): f.get("type") for f in (r.get("schema") or {}).get("fields", [])}
        for name in table.column_names:
            col = table.column(name)
            live = pc.match_substring_regex(col, _LIVE)
            if types.get(name) != "string":
                # A number such as -5 is not a formula; anything else starting with a trigger is.
                live = pc.and_(live, pc.invert(pc.match_substring_regex(col, _NUMBER)))
            rows = _rows(live)
            if rows:
                problems.append(f"{rel}: column {name!r}: live formula cell(s) in rows {rows}")
        problems.extend(_control_findings(rel, table))
        stem = rel.removesuffix(".csv")
        pq_path = bundle / f"{stem}.parquet"
        if pq_path.is_file():
            try:
                problems.extend(_control_findings(f"{stem}.parquet", pq.read_table(pq_path)))
            except (pa.ArrowException, OSError):
                problems.append(f"{stem}.parquet: not readable as Parquet")
        gj = bundle / f"{stem}.geojson"
        if gj.is_file():
            text = gj.read_text(encoding="utf-8", errors="replace")
            if re.search(UNSAFE_CHARS, text) or re.search(r"\\u00(?:0[0-8bcef]|1[0-9a-f]|7f|[89][0-9a-f])|\\u20(?:2[a-e]|6[6-9])",
                                                          text, re.I):
                problems.append(f"{stem}.geojson: control character or NUL in a property")
    if problems:
        return [Finding("published-cells", False, "; ".join(problems[:10]))]
    return [Finding("published-cells", True, f"no live formula, control character or NUL in {checked} published table(s)")]


registry.add_hook(registry.BUNDLE_CHECKS, cells_bundle_check)
# Listed after every output plug-in in registry.PLUGINS, so every output kind is known here.
for _kind in list(registry.OUTPUTS):
    registry.add_hook(registry.ASSESSORS.setdefault(_kind, []), neutralised_figure)
