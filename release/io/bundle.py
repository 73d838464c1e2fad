"""Write a bundle atomically (staging folder, fsync, rename; manifest last) and read one back."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from release.context import test_mode
from release.errors import UsageError
from release.policy.base import ColumnType, Schema

STAGING_PREFIX = ".staging-"


def _crash_point(name: str) -> None:
    """Test hook: RELEASE_TEST_CRASH_AT=<name> kills the process here (test mode only)."""
    if test_mode() and os.environ.get("RELEASE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB blocks (published files, networks and layers of any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=_json_default) + "\n").encode()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = iso_seconds(out[c])
    return out


def iso_seconds(s: pd.Series) -> pd.Series:
    """Datetimes as ISO 8601 text to the second (`%Y-%m-%dT%H:%M:%S`, floored), nulls as NaN, in Arrow."""
    if getattr(s.dt, "tz", None) is not None:
        return s.dt.strftime("%Y-%m-%dT%H:%M:%S")
    v = s.to_numpy(dtype="datetime64[ns]")
    # NumPy's ISO text in C (Arrow's strftime costs microseconds a value); the cast to seconds floors.
    txt = np.datetime_as_string(v.astype("datetime64[s]"), unit="s").astype(object)
    txt[np.isnat(v)] = np.nan
    return pd.Series(txt, index=s.index, name=s.name)


def table_to_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes; string cells a spreadsheet would run as a formula get a leading apostrophe (OWASP).

    The text is pandas' `to_csv` (QUOTE_MINIMAL, floats as %.7f, nulls empty), built column by
    column in Arrow's kernels and row chunk by row chunk; a column of another kind (mixed Python
    objects) or a one-column table goes through pandas itself, byte for byte the same format.
    """
    return csv_text(frame)


def csv_text(frame: pd.DataFrame, header: bool = True) -> bytes:
    """`table_to_csv` of some rows, with or without the header line: the file written chunk by chunk
    (header on the first chunk only) is byte for byte the file written whole."""
    ready = _csv_ready(frame)
    if ready.shape[1] > 1:
        got = _arrow_csv(ready, header)
        if got is not None:
            return got
    return _pandas_csv(ready, header)


def _pandas_csv(ready: pd.DataFrame, header: bool = True) -> bytes:
    from release.outputs.cells import neutralise_frame

    buf = io.StringIO()
    safe, _ = neutralise_frame(ready)
    safe.to_csv(buf, index=False, lineterminator="\n", float_format="%.7f", header=header)
    return buf.getvalue().encode("utf-8")


CSV_CHUNK_ROWS = 1 << 18
"Rows of CSV or GeoJSON text built at a time (bounds the text held besides the file's bytes)."
_NEUTRALISE_RE2 = r"^'*[=+\-@\t\r]"
_QUOTE_RE2 = r'[,"\n]'


def _csv_header(columns: list[Any]) -> bytes:
    import csv

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([str(c) for c in columns])
    return buf.getvalue().encode("utf-8")


def _arrow_csv(ready: pd.DataFrame, header: bool = True) -> bytes | None:
    """`_pandas_csv` through Arrow (None when a column is of a kind only pandas formats)."""
    parts = [_csv_header(list(ready.columns))] if header else []
    n = len(ready)
    for start in range(0, n, CSV_CHUNK_ROWS):
        chunk = ready.iloc[start:start + CSV_CHUNK_ROWS]
        cols = []
        for c in chunk.columns:
            txt = _csv_cells(chunk[c])
            if txt is None:
                return None
            cols.append(txt)
        lines = _join(*cols, sep=",")
        lines = _join(lines, "", sep="\n")
        parts.append(_string_bytes(lines))
    return b"".join(parts)


def _L(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _join(*parts: Any, sep: str = "") -> Any:
    """Element-wise concatenation of large-string arrays and scalars with a separator."""
    return pc.binary_join_element_wise(*[_L(p) if isinstance(p, str) else p for p in parts], _L(sep))


def _string_bytes(arr: pa.Array) -> bytes:
    """The concatenated values of a (null-free) string array, straight from its buffers."""
    arr = arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return b""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    return arr.buffers()[2][int(offsets[0]):int(offsets[-1])].to_pybytes()  # one copy: the buffer slice is a view


def _csv_cells(s: pd.Series) -> pa.Array | None:
    """One column's CSV cells as Arrow text (nulls as empty cells), or None when pandas must format it."""
    dt = s.dtype
    if pd.api.types.is_float_dtype(dt):
        return _float_cells(s.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_bool_dtype(dt) and not isinstance(dt, pd.CategoricalDtype):
        arr = pa.array(s, type=pa.bool_(), from_pandas=True)
        return pc.fill_null(pc.if_else(arr, _L("True"), _L("False")), _L(""))
    if pd.api.types.is_integer_dtype(dt):
        arr = pa.array(s, type=pa.int64(), from_pandas=True)
        return pc.fill_null(pc.cast(arr, pa.large_string()), _L(""))
    if isinstance(dt, pd.CategoricalDtype):
        s = s.astype(object)
    if isinstance(dt, pd.StringDtype) or s.dtype == object:
        try:
            arr = pa.array(s, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            return None
        if pa.types.is_null(arr.type):
            return pc.fill_null(arr.cast(pa.large_string()), _L(""))
        if pa.types.is_boolean(arr.type):
            return pc.fill_null(pc.if_else(arr, _L("True"), _L("False")), _L(""))
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return None  # numbers or mixed objects in an object column: pandas' own formatting
        arr = arr.cast(pa.large_string())
        # Formula neutralisation (release.outputs.cells), then CSV quoting as Python's csv module does.
        # (Each rewrite only when some value needs it: most columns need neither, and a rewrite copies all.)
        need = pc.match_substring_regex(arr, _NEUTRALISE_RE2)
        if pc.any(need).as_py():
            arr = pc.if_else(need, _join("'", arr), arr)
        need = pc.match_substring_regex(arr, _QUOTE_RE2)
        if pc.any(need).as_py():
            arr = pc.if_else(need, _join('"', pc.replace_substring(arr, '"', '""'), '"'), arr)
        return pc.fill_null(arr, _L(""))
    return None


def _float_cells(x: np.ndarray) -> pa.Array:
    """'%.7f' of every float (NaN empty), by integer arithmetic; values a rounding tie or range could
    make differ from C's printf are formatted by Python itself."""
    a = np.abs(x)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = a * 1e7
        fine = np.isfinite(scaled) & (scaled < 2.0**52)
        frac = scaled - np.floor(np.where(fine, scaled, 0.0))
        fine &= np.abs(frac - 0.5) > np.maximum(1e-6, scaled * 1e-15)
        q = np.rint(np.where(fine, scaled, 0.0)).astype(np.int64)
    ip = pc.cast(pa.array(q // 10_000_000), pa.large_string())
    fp = pc.utf8_lpad(pc.cast(pa.array(q % 10_000_000), pa.large_string()), 7, "0")
    txt = _join(ip, fp, sep=".")
    txt = pc.if_else(pa.array(np.signbit(x)), _join("-", txt), txt)
    slow = ~fine & ~np.isnan(x)
    if slow.any():
        txt = pc.replace_with_mask(txt, pa.array(slow), pa.array([f"{v:.7f}" for v in x[slow]], pa.large_string()))
    return pc.if_else(pa.array(np.isnan(x)), _L(""), txt)


PARQUET_ROW_GROUP = 1 << 20
"Rows per Parquet row group (pyarrow's default, given explicitly so a streamed file has the same groups)."


def parquet_table(frame: pd.DataFrame) -> pa.Table:
    """The Arrow table a frame is published as in Parquet."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # pandas metadata carries nothing a reader needs and varies across versions: leave it out.
    table = table.replace_schema_metadata(None)
    # Text is written as `string` however pandas held it (its Arrow-backed strings are large_string).
    if any(pa.types.is_large_string(f.type) for f in table.schema):
        table = table.cast(pa.schema([pa.field(f.name, pa.string(), f.nullable) if pa.types.is_large_string(f.type)
                                      else f for f in table.schema]))
    return table


def table_to_parquet(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(parquet_table(frame), sink, compression="zstd", row_group_size=PARQUET_ROW_GROUP)
    return sink.getvalue().to_pybytes()


def table_to_geojson(frame: pd.DataFrame, lat: str, lon: str) -> bytes:
    """Point features for rows with coordinates; rows without them are left to the CSV.

    One feature a line; the properties are pandas' `to_json` records, built in Arrow's kernels
    when every property column is text, integer or boolean (else by pandas, the same bytes).
    """
    have = frame[lat].notna() & frame[lon].notna()
    head, tail = b'{"type":"FeatureCollection","features":[\n', b"\n]}\n"
    rows = frame.loc[have]
    if len(rows) == 0:
        return head + tail
    # Row chunk by row chunk: the text of one chunk at a time besides the file's bytes.
    parts = [head]
    for start in range(0, len(rows), CSV_CHUNK_ROWS):
        body = _geojson_features(rows.iloc[start:start + CSV_CHUNK_ROWS], lat, lon)
        parts.append(b",\n" + body if start else body)
    parts.append(tail)
    return b"".join(parts)


GEOJSON_HEAD = b'{"type":"FeatureCollection","features":[\n'
GEOJSON_TAIL = b"\n]}\n"


def _geojson_features(rows: pd.DataFrame, lat: str, lon: str) -> bytes:
    """The features of some rows (all with coordinates), one a line, joined by ',\n'."""
    return geojson_features(rows, lat, lon)[0]


def geojson_features(rows: pd.DataFrame, lat: str, lon: str) -> tuple[bytes, pa.Array, pa.Array]:
    """The features of some rows (all with coordinates) and their x and y as the text written."""
    sub = _csv_ready(rows)
    props = sub.drop(columns=[lat, lon])
    n = len(sub)
    xs = _float_cells(sub[lon].to_numpy(dtype=float))
    ys = _float_cells(sub[lat].to_numpy(dtype=float))
    p = _json_props(props) if props.shape[1] else pa.array(["{}"] * n, pa.large_string())
    if p is None:
        lines = props.to_json(orient="records", lines=True, force_ascii=False).split("\n")[:n]
        p = pa.array(lines, pa.large_string())
    feats = _join('{"type":"Feature","geometry":{"type":"Point","coordinates":[', xs, ",", ys, ']},"properties":', p,
                  "}")
    body = _string_bytes(_join(feats, "", sep=",\n"))
    return body[:-2], xs, ys


_JSON_UNSAFE_RE2 = r"[\x{0}-\x{8}\x{b}-\x{1f}]"


def _json_props(props: pd.DataFrame) -> pa.Array | None:
    """Each row's properties as pandas writes them (`to_json`, records, force_ascii=False), or None."""
    import json as _json

    parts: list[Any] = []
    for i, c in enumerate(props.columns):
        name = str(c)
        if any(ch in name for ch in '"\\/') or any(ord(ch) < 32 for ch in name):
            return None
        v = _json_values(props[c])
        if v is None:
            return None
        parts += [("{" if i == 0 else ",") + _json.dumps(name, ensure_ascii=False) + ":", v]
    parts.append("}")
    return _join(*parts)


def _json_values(s: pd.Series) -> pa.Array | None:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt) and not isinstance(dt, pd.CategoricalDtype):
        arr = pa.array(s, type=pa.bool_(), from_pandas=True)
        return pc.fill_null(pc.if_else(arr, _L("true"), _L("false")), _L("null"))
    if pd.api.types.is_integer_dtype(dt):
        return pc.fill_null(pc.cast(pa.array(s, type=pa.int64(), from_pandas=True), pa.large_string()), _L("null"))
    if isinstance(dt, pd.CategoricalDtype):
        s = s.astype(object)
    if not (isinstance(dt, pd.StringDtype) or s.dtype == object):
        return None  # floats and the rest: pandas' own number formatting
    try:
        arr = pa.array(s, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    if pa.types.is_null(arr.type):
        return pc.fill_null(arr.cast(pa.large_string()), _L("null"))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    arr = arr.cast(pa.large_string())
    if pc.any(pc.match_substring_regex(arr, _JSON_UNSAFE_RE2)).as_py():
        return None  # control characters are refused at validation; pandas escapes any that get here
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("/", "\\/"), ("\t", "\\t"), ("\n", "\\n")):
        # A literal search is far cheaper than a replace that copies every value: replace only if present.
        if pc.any(pc.match_substring(arr, a)).as_py():
            arr = pc.replace_substring(arr, a, b)
    return pc.fill_null(_join('"', arr, '"'), _L("null"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def staging_folder(out: Path, dataset: str, release_id: str) -> Path:
    """The staging folder a bundle is written in before its rename (files may be streamed into it first)."""
    return out / dataset / f"{STAGING_PREFIX}{release_id}"


def write_bundle(out: Path, dataset: str, release_id: str, files: Any,
                 manifest: dict[str, Any], sign: Callable[[bytes], bytes] | None = None) -> Path:
    """Write files, manifest.json and its signature into a staging folder, fsync, and rename into place.

    `files` maps bundle paths to bytes, or (release.io.stream.PublishedFiles) to files already
    streamed into the staging folder, whose recorded sha256 the manifest lists.

    Readers see either no bundle or a complete one: the rename is atomic on one filesystem and
    the staging folder's name starts with a dot, so no tool takes it for a release.
    """
    parent = out / dataset
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the publish folder {parent}: {e.strerror or e}") from None
    final = parent / release_id
    if final.exists():
        raise UsageError(f"a bundle {final} already exists; nothing was published (run again for a new release id)")
    staging = parent / f"{STAGING_PREFIX}{release_id}"
    try:
        _stage(staging, files, manifest, sign)
        _crash_point("before-rename")
        os.rename(staging, final)
        _fsync_dir(parent)
    except OSError as e:
        # Disk full, permissions, a vanished folder: take the staging folder away, publish nothing.
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"cannot write the bundle under {parent}: {e.strerror or e}; nothing was published") from None
    _crash_point("after-rename")
    return final


def _stage(staging: Path, files: Any, manifest: dict[str, Any],
           sign: Callable[[bytes], bytes] | None) -> None:
    streamed = any(not isinstance(files.raw(r) if hasattr(files, "raw") else files[r], bytes) for r in files)
    if staging.exists() and not streamed:
        shutil.rmtree(staging)
    staging.mkdir(exist_ok=streamed)
    _crash_point("staging-created")
    hashes: dict[str, str] = {}
    for i, rel in enumerate(sorted(files)):
        data = files.raw(rel) if hasattr(files, "raw") else files[rel]
        if isinstance(data, bytes):
            _write_file(staging / rel, data)
            hashes[rel] = sha256_bytes(data)
        else:
            # Streamed into this staging folder while the run wrote it (release.io.stream), hashed as written.
            if data.path.resolve() != (staging / rel).resolve():
                raise OSError(f"{rel} was staged outside the bundle's staging folder")
            hashes[rel] = data.sha256
        _crash_point(f"file-{i}")
    man = dict(manifest)
    man["files"] = hashes
    _crash_point("before-manifest")
    data = canonical_json(man)
    _write_file(staging / "manifest.json", data)
    if sign is not None:
        # Detached: the signature covers manifest.json's exact bytes, which list every other file's sha256.
        _write_file(staging / "manifest.sig", sign(data))
    for d in {(staging / rel).parent for rel in files} | {staging}:
        _fsync_dir(d)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_csv_text(path: Any) -> pd.DataFrame:
    """A published CSV with every column as text (empty cells null), parsed by pyarrow into Arrow-backed strings."""
    import csv

    import pyarrow.csv as pacsv

    if isinstance(path, (str, Path)):
        from release.io.stream import read_csv_batches

        # A file on disk is read in blocks: never its whole bytes beside the table.
        batches = list(read_csv_batches(Path(path)))
        if not batches:
            return pd.DataFrame()
        return pa.Table.from_batches(batches).to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow"))
    data = path.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    first = data.split(b"\n", 1)[0].decode("utf-8")
    names = next(csv.reader([first]), []) if first else []
    if not names:
        return pd.DataFrame()
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[""],
                                             strings_can_be_null=True, quoted_strings_can_be_null=True))
    return table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow"))


def read_published_csv(path: Path, schema: Schema) -> pd.DataFrame:
    """Read a published CSV back with the types its columns were declared with."""
    from release.outputs.cells import restore_frame
    from release.validate import _convert

    raw = _read_csv_text(path)
    raw = restore_frame(raw)  # the published values, as Parquet and GeoJSON hold them
    index = raw.index
    out = {}
    for c in list(raw.columns):
        # Each text column is let go once converted: one column's two forms at a time, not the table's.
        spec = schema.get(c)
        if spec is None:
            obj = raw[c].astype(object).where(raw[c].notna(), np.nan)
            num = pd.to_numeric(obj, errors="coerce")
            out[c] = num if num.notna().sum() == raw[c].notna().sum() else raw[c].astype("string")
        elif spec.type in (ColumnType.datetime, ColumnType.date):
            # Text kept in Arrow memory (not a Python string per value: at 10M rows that is gigabytes).
            out[c] = raw[c].astype(pd.StringDtype("pyarrow"))
        else:
            out[c], _ = _convert(raw[c], spec)
        del raw[c]
    return pd.DataFrame(out, index=index)
