"""Read internal records (CSV or Parquet) through pyarrow, every column as text or its stored type.

Every failure is a located InputError (file, row, column, rule) that never quotes a value: parser
messages that carry row text are caught here and replaced by a location found by a second,
streaming pass over the file (only ever run on the error path).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from release.errors import InputError

ENCODINGS = {"utf-8": "utf-8", "cp1252": "cp1252", "latin-1": "latin-1"}
DELIMITERS = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
DEFAULT_MAX_FIELD = 65_536
"Longest field (characters) accepted by default; longer ones are located input errors."
MAX_HEADER_BYTES = 1 << 20
"A header row longer than this is not a header (a headerless file or a broken line)."
# pandas holds timestamps as int64 nanoseconds: outside this range a value cannot be represented.
_TS_MIN = pd.Timestamp.min.tz_localize(None).ceil("D")
_TS_MAX = pd.Timestamp.max.tz_localize(None).floor("D")
_NULLS = ["", "NA", "N/A", "null", "NULL", "NaN", "nan"]


@dataclass(frozen=True)
class ReadOptions:
    """How to read a CSV file (from the policy's `input` section)."""

    encoding: str = "utf-8"
    delimiter: str = "comma"
    max_field_length: int = DEFAULT_MAX_FIELD

    @classmethod
    def of(cls, spec: Any) -> ReadOptions:
        if spec is None:
            return cls()
        return cls(encoding=spec.encoding, delimiter=spec.delimiter, max_field_length=spec.max_field_length)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_table(path: str | Path, spec: Any = None) -> pd.DataFrame:
    """Read records without interpreting them: CSV columns stay text, so validation sees every value.

    `spec` is the policy's InputSchema (encoding, delimiter, longest field); None reads UTF-8 CSV.
    """
    table = read_arrow(path, spec)
    return table.to_pandas(types_mapper=lambda t: pd.StringDtype()
                           if pa.types.is_string(t) or pa.types.is_large_string(t) else None)


def read_arrow(path: str | Path, spec: Any = None) -> pa.Table:
    """`read_table` as an Arrow table (what the batch engine slices into record batches)."""
    p = Path(path)
    opts = ReadOptions.of(spec)
    if not p.exists():
        raise InputError(f"{p}: no such input file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = _read_parquet(p)
    elif suffix in (".csv", ".txt", ".tsv") or suffix == "":
        table = _read_csv(p, opts)
    else:
        raise InputError(f"{p}: unknown input format (use .csv or .parquet)")
    return table.rename_columns(_column_names(table.column_names, p))


def _column_names(header: list[str], path: Path) -> list[str]:
    """The header's names without a byte-order mark; refused when two are equal."""
    names = [n.lstrip("\ufeff") for n in header]
    seen: dict[str, int] = {}
    dups = []
    for i, n in enumerate(names, 1):
        if n in seen:
            dups.append(f"{seen[n]} and {i}")
        seen.setdefault(n, i)
    if dups:
        # Positions, not names: a header that is really a data row must not be echoed.
        raise InputError(f"{path}: header row: duplicate column names at positions {'; '.join(dups)}"
                         " [rule: unique-column-names]")
    return names


class CsvBatches:
    """A CSV input read as a stream of record batches (never the whole file in memory).

    The same reading rules and located errors as `read_arrow`; a fault found mid-stream raises
    the same InputError (nothing is published: the run stops before any output).
    """

    def __init__(self, path: Path, spec: Any = None) -> None:
        self.path = Path(path)
        self.opts = ReadOptions.of(spec)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such input file")
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a regular file")
        codec, delim = ENCODINGS[self.opts.encoding], DELIMITERS[self.opts.delimiter]
        names = _header(self.path, codec, delim)
        if not names:
            raise InputError(f"{self.path}: the file is empty (no header row) [rule: header]")
        self.file_names = names
        self.names = _column_names(names, self.path)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches in file order (text columns; `columns`: only these, by their header names)."""
        codec, delim = ENCODINGS[self.opts.encoding], DELIMITERS[self.opts.delimiter]
        block = max(1 << 20, min(4 * self.opts.max_field_length + (1 << 20), 1 << 30))
        try:
            include = None
            if columns is not None:
                # The names as pyarrow reads them (a second byte-order mark stays in the first name).
                probe = pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(
                    encoding="utf8" if codec == "utf-8" else codec, block_size=block, use_threads=False),
                    parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in self.file_names},
                                                         strings_can_be_null=True, null_values=_NULLS))
                seen = probe.schema.names
                probe.close()
                include = [next((n for n in seen if n.lstrip("\ufeff") == c), c) for c in columns]
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(encoding="utf8" if codec == "utf-8" else codec, block_size=block,
                                               use_threads=False),
                parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in self.file_names},
                                                     strings_can_be_null=True, null_values=_NULLS,
                                                     include_columns=include))
            for b in reader:
                yield b.rename_columns([n.lstrip("\ufeff") for n in b.schema.names])
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as e:
            where = _locate_csv_fault(self.path, codec, delim, self.opts.max_field_length)
            if where is None:
                kind = "broken row structure" if "column" in str(e).lower() else "unparseable content"
                where = f"{kind} [rule: csv-format]"
            raise InputError(f"{self.path}: cannot parse as {self.opts.encoding} {self.opts.delimiter}-separated CSV:"
                             f" {where}; nothing was published") from None
        except OSError as e:
            raise InputError(f"{self.path}: cannot read: {e.strerror or type(e).__name__}") from None


def is_csv(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".csv", ".txt", ".tsv", "")


# ---------------------------------------------------------------------------------------------- Parquet

def _read_parquet(p: Path) -> pa.Table:
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as e:
        # Parquet errors can quote statistics or page contents: say what failed, not what it read.
        raise InputError(f"{p}: cannot read as Parquet ({type(e).__name__}: the file is damaged, "
                         "truncated or not Parquet) [rule: parquet-format]") from None
    _check_parquet_timestamps(p, table)
    return table


def _check_parquet_timestamps(p: Path, table: pa.Table) -> None:
    """Timestamps pandas cannot hold (year 1, year 9999) are located errors, not an overflow with the value."""
    per_ns = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
    problems = []
    for i, name in enumerate(table.column_names):
        t = table.column(i).type
        if not pa.types.is_timestamp(t) or t.unit == "ns":
            continue  # nanoseconds always fit; dates are read as objects and checked by validation
        raw = pc.cast(table.column(i), pa.int64())
        lo, hi = -(-_TS_MIN.value // per_ns[t.unit]), _TS_MAX.value // per_ns[t.unit]
        bad = pc.fill_null(pc.or_(pc.less(raw, lo), pc.greater(raw, hi)), False)
        rows = pc.indices_nonzero(bad).to_numpy() + 1
        if len(rows):
            problems.append(f"column {name!r}: timestamp outside {_TS_MIN.date()}..{_TS_MAX.date()} "
                            f"({len(rows)}): rows {', '.join(str(int(r)) for r in rows[:20])}"
                            + (f" and {len(rows) - 20} more" if len(rows) > 20 else ""))
    if problems:
        raise InputError(f"{p}: {len(problems)} column(s) hold timestamps that cannot be represented "
                         "[rule: timestamp-range]; nothing was published", details=problems)


# -------------------------------------------------------------------------------------------------- CSV

def _read_csv(p: Path, opts: ReadOptions) -> pa.Table:
    codec = ENCODINGS[opts.encoding]
    delim = DELIMITERS[opts.delimiter]
    names = _header(p, codec, delim)
    if not names:
        raise InputError(f"{p}: the file is empty (no header row) [rule: header]")
    # Blocks must hold the longest accepted row, so an over-long field is found by the length
    # rule (with its row and column), not by a block-boundary message.
    block = max(1 << 20, min(4 * opts.max_field_length + (1 << 20), 1 << 30))
    try:
        return pacsv.read_csv(
            p,
            read_options=pacsv.ReadOptions(encoding="utf8" if codec == "utf-8" else codec, block_size=block),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                null_values=_NULLS,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as e:
        where = _locate_csv_fault(p, codec, delim, opts.max_field_length)
        if where is None:
            # pyarrow's text may quote the row: name only the kind of fault.
            kind = "broken row structure" if "column" in str(e).lower() else "unparseable content"
            where = f"{kind} [rule: csv-format]"
        raise InputError(f"{p}: cannot parse as {opts.encoding} {opts.delimiter}-separated CSV: {where};"
                         " nothing was published") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or type(e).__name__}") from None


def _header(p: Path, codec: str, delim: str) -> list[str]:
    """The header row, read and checked on its own (bounded), before pyarrow sees the file."""
    try:
        with open(p, "rb") as f:
            head = f.read(MAX_HEADER_BYTES + 1)
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or type(e).__name__}") from None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(f"{p}: the file is UTF-16 (byte-order mark); save it as UTF-8, cp1252 or Latin-1"
                         " [rule: encoding]")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    end = _header_end(head)
    if end is None:
        if len(head) > MAX_HEADER_BYTES:
            raise InputError(f"{p}: header row: longer than {MAX_HEADER_BYTES:,} bytes (a headerless file"
                             " or a broken line?) [rule: header]")
        end = len(head)
    line = head[:end]
    if b"\x00" in line:
        raise InputError(f"{p}: header row: holds a NUL byte [rule: nul-byte]")
    try:
        text = line.decode(codec)
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: header row, byte {e.start + 1}: not valid {codec} [rule: encoding]") from None
    try:
        row = next(csv.reader([text], delimiter=delim, strict=True), [])
    except csv.Error as e:
        raise InputError(f"{p}: header row: {e} [rule: csv-format]") from None
    return [c.lstrip("\ufeff") for c in row]


def _header_end(head: bytes) -> int | None:
    """Offset of the newline that ends the first CSV record (quotes may hold newlines)."""
    inq = False
    for m in re.finditer(rb'["\n]', head):
        if m.group() == b'"':
            inq = not inq
        elif not inq:
            return m.start()
    return None


def _locate_csv_fault(p: Path, codec: str, delim: str, max_field: int) -> str | None:
    """Find the first fault pyarrow stopped at, as 'row N, column C: rule' (never the row's text)."""
    # Undecodable bytes: located by physical line, since the CSV layer cannot read past them.
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode(codec)
            except UnicodeDecodeError as e:
                return f"line {lineno}, byte {e.start + 1} of the line: not valid {codec} [rule: encoding]"
    old = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        with open(p, encoding=codec, newline="") as f:
            r = csv.reader(f, delimiter=delim, strict=True)
            header = next(r, [])
            row = 0
            try:
                for rec in r:
                    row += 1
                    if len(rec) != len(header) and rec:
                        return (f"row {row} (line {r.line_num}): {len(rec)} fields where the header has "
                                f"{len(header)} [rule: field-count]")
                    for j, v in enumerate(rec):
                        if len(v) > max_field:
                            # The column by position: this header may itself be a data row.
                            return (f"row {row}, column {j + 1}: field longer than {max_field:,} characters"
                                    " [rule: field-length]")
            except csv.Error as e:
                return f"row {row + 1} (line {r.line_num}): {e} [rule: csv-format]"
    finally:
        csv.field_size_limit(old)
    return None
