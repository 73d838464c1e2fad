"""The files executors read (street network, address points, area layers, hierarchies): shipped from the driver.

A release reads every such file once on the driver, into a private copy it hashed (release.governance.trusted:
the hashes the approval covers and the manifest records). Executors must read those bytes, not the
paths the user gave: on a cluster the paths are the driver's, and even where they are shared the file
could have changed since the driver read it. So the driver ships each copy with SparkContext.addFile,
named by its sha256 (content-addressed: two runs, or two files with the same base name, never clash in
Spark's file server or SparkFiles' folder), and each Python worker copies it once out of SparkFiles,
hashing as it copies, into a folder of its own under SparkFiles' root with the file's own base name
(so what the steps record, the file's name and sha256, is what the local runner records). A copy whose
sha256 is not the one the driver recorded stops the run with a located error (exit 2), never a mask
made from other bytes.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.errors import InputError, InternalError

_CHUNK = 1 << 20
_STAGE: list[Path] = []
"The driver's folder of content-addressed copies handed to addFile (one per process, removed at exit)."
_LOCAL: dict[tuple[str, str, str], Path] = {}
"Per Python worker: (staged name, file name, expected sha256) -> the verified private copy (once per process)."


@dataclass(frozen=True)
class Shipped:
    """One file the driver shipped: its logical name (as the steps ask for it) and what it must hash to."""

    name: str
    "Logical name (network, streets, addresses, a layer's name, a hierarchy's name)."
    kind: str
    "What it is, for messages (network, layer, hierarchy...)."
    file: str
    "The file's base name as the user gave it (what the steps record in the manifest)."
    staged: str
    "Its name in SparkFiles (the sha256 the driver computed)."
    sha256: str
    "The sha256 the driver recorded (the approval's and the manifest's): every executor copy must match it."


@dataclass(frozen=True)
class ShippedFiles:
    """The run's shipped files by logical name; on an executor it stands where the driver's TrustedFiles does
    (StepContext.options['_trusted']), so `trusted_path` hands the steps the verified local copy."""

    files: dict[str, Shipped] = field(default_factory=dict)

    def take(self, name: str, kind: str, path: Path) -> Path:
        """The executor's verified copy of the file the driver read under `name` (`path` is the driver's)."""
        f = self.files.get(name)
        if f is None:
            raise InternalError(f"{kind} {name!r} ({Path(path).name}) is read on an executor but the driver did not"
                                " ship it (this is a bug: every file a row-local step reads is taken before the"
                                " row stage)")
        return local_copy(f)


def local_copy(f: Shipped) -> Path:
    """This process's private copy of a shipped file, verified against the driver's sha256 (once per process)."""
    from pyspark import SparkFiles

    key = (f.staged, f.file, f.sha256)
    got = _LOCAL.get(key)
    if got is not None:
        return got
    src = Path(SparkFiles.get(f.staged))
    folder = Path(SparkFiles.getRootDirectory()) / f"release-{os.getpid()}" / f.staged[:16]
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    dst = folder / f.file
    h = hashlib.sha256()
    try:
        if dst.exists():
            dst.chmod(0o600)
        with open(src, "rb") as a, open(dst, "wb") as b:
            while chunk := a.read(_CHUNK):
                h.update(chunk)
                b.write(chunk)
    except OSError as e:
        raise InputError(f"{f.kind} file {f.file} ({f.name}): the copy shipped to this executor cannot be read"
                         f" ({e.strerror}); nothing was published") from None
    os.chmod(dst, 0o400)
    if h.hexdigest() != f.sha256:
        dst.unlink(missing_ok=True)
        raise InputError(f"{f.kind} file {f.file} ({f.name}): the copy this executor received has sha256"
                         f" {h.hexdigest()}, not {f.sha256} as the driver read it (and the approval covers);"
                         " nothing was published",
                         details=["the file was replaced or damaged on its way to the executor: run the release"
                                  " again"])
    _LOCAL[key] = dst
    return dst


def _stage_dir() -> Path:
    if not _STAGE:
        d = Path(tempfile.mkdtemp(prefix="release-spark-files-"))
        os.chmod(d, 0o700)
        atexit.register(shutil.rmtree, d, True)
        _STAGE.append(d)
    return _STAGE[0]


def _stage(copy: Path, sha256: str, what: str) -> Path:
    """The content-addressed copy of `copy` the driver hands to addFile (made once per sha256 per process)."""
    dst = _stage_dir() / sha256
    if dst.exists():
        return dst
    h = hashlib.sha256()
    tmp = dst.with_suffix(".part")
    with open(copy, "rb") as a, open(tmp, "wb") as b:
        while chunk := a.read(_CHUNK):
            h.update(chunk)
            b.write(chunk)
    if h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{what}: the run's private copy changed after it was hashed; nothing was published")
    os.chmod(tmp, 0o400)
    tmp.rename(dst)
    return dst


def ship(spark: Any, trusted: Any) -> ShippedFiles:
    """Ship every file the run has read so far (besides the records, which Spark reads itself) to the
    executors: its approved private copy, by SparkContext.addFile, with the sha256 the driver recorded."""
    files: dict[str, Shipped] = {}
    for name, subject in sorted(trusted.subjects.items()):
        copy = trusted.copy_of(name)
        if subject.kind == "records" or copy is None:
            continue
        staged = _stage(copy, subject.sha256, f"{subject.kind} file {copy.name} ({name})")
        # A path already added (an earlier run in this session, the same bytes) is kept as it is.
        spark.sparkContext.addFile(str(staged))
        files[name] = Shipped(name=name, kind=subject.kind, file=copy.name, staged=staged.name,
                              sha256=subject.sha256)
    return ShippedFiles(files)
