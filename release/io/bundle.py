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
            out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def table_to_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes; string cells a spreadsheet would run as a formula get a leading apostrophe (OWASP)."""
    from release.outputs.cells import neutralise_frame

    buf = io.StringIO()
    safe, _ = neutralise_frame(_csv_ready(frame))
    safe.to_csv(buf, index=False, lineterminator="\n", float_format="%.7f")
    return buf.getvalue().encode("utf-8")


def table_to_parquet(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # pandas metadata carries nothing a reader needs and varies across versions: leave it out.
    table = table.replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def table_to_geojson(frame: pd.DataFrame, lat: str, lon: str) -> bytes:
    """Point features for rows with coordinates; rows without them are left to the CSV."""
    have = frame[lat].notna() & frame[lon].notna()
    sub = _csv_ready(frame.loc[have])
    props = sub.drop(columns=[lat, lon])
    lines = props.to_json(orient="records", lines=True, force_ascii=False).splitlines() if len(props) else []
    if props.shape[1] == 0:
        lines = ["{}"] * len(sub)
    xs = np.char.mod("%.7f", sub[lon].to_numpy(dtype=float))
    ys = np.char.mod("%.7f", sub[lat].to_numpy(dtype=float))
    feats = [f'{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{x},{y}]}},"properties":{p}}}'
             for x, y, p in zip(xs, ys, lines, strict=True)]
    return ('{"type":"FeatureCollection","features":[\n' + ",\n".join(feats) + "\n]}\n").encode()


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


def write_bundle(out: Path, dataset: str, release_id: str, files: dict[str, bytes],
                 manifest: dict[str, Any], sign: Callable[[bytes], bytes] | None = None) -> Path:
    """Write files, manifest.json and its signature into a staging folder, fsync, and rename into place.

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


def _stage(staging: Path, files: dict[str, bytes], manifest: dict[str, Any],
           sign: Callable[[bytes], bytes] | None) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    _crash_point("staging-created")
    hashes: dict[str, str] = {}
    for i, (rel, data) in enumerate(sorted(files.items())):
        _write_file(staging / rel, data)
        hashes[rel] = sha256_bytes(data)
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


def read_published_csv(path: Path, schema: Schema) -> pd.DataFrame:
    """Read a published CSV back with the types its columns were declared with."""
    from release.outputs.cells import restore_frame
    from release.validate import _convert

    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    raw = restore_frame(raw)  # the published values, as Parquet and GeoJSON hold them
    out = {}
    for c in raw.columns:
        spec = schema.get(c)
        if spec is None:
            num = pd.to_numeric(raw[c], errors="coerce")
            out[c] = num if num.notna().sum() == raw[c].notna().sum() else raw[c].astype("string")
        elif spec.type in (ColumnType.datetime, ColumnType.date):
            out[c] = raw[c].astype("string")
        else:
            out[c], _ = _convert(raw[c], spec)
    return pd.DataFrame(out, index=raw.index)
