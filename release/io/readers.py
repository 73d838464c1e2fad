"""Read internal records (CSV or Parquet) through pyarrow, every column as text or its stored type."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from release.errors import InputError


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read records without interpreting them: CSV columns stay text, so validation sees every value."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such input file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            table = pq.read_table(p)
        elif suffix in (".csv", ".txt") or suffix == "":
            # Read the header first so every column can be forced to text.
            with open(p, encoding="utf-8-sig", newline="") as f:
                names = next(csv.reader(f), [])
            table = pacsv.read_csv(
                p,
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=True,
                    null_values=["", "NA", "N/A", "null", "NULL", "NaN", "nan"],
                ),
            )
        else:
            raise InputError(f"{p}: unknown input format {suffix!r} (use .csv or .parquet)")
    except pa.ArrowInvalid as e:
        raise InputError(f"{p}: cannot parse: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e}") from None
    names = [n.lstrip("\ufeff") for n in table.column_names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{p}: duplicate column names {dup}")
    table = table.rename_columns(names)
    return table.to_pandas(types_mapper=lambda t: pd.StringDtype() if pa.types.is_string(t) or pa.types.is_large_string(t) else None)
