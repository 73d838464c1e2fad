"""Files a release trusts are read once: hashed while copied into a private folder, and only the copy is used.

A file that is read twice (once to check, once to use) can change in between: a named pipe
serves two texts, an editor saves mid-run. Every file a release reads besides the policy (which
the engine reads once into memory) goes through `TrustedFiles.take`: the bytes are streamed
once, hashed as they pass and written to a folder only this process can read; the loaders are
handed that copy. The hashes are the subjects the approval must cover and the manifest records.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from release.errors import BlockedError, ReleaseError, UsageError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Subject:
    """One file a release reads: its logical name (not its path), what it is, its sha256 and size."""

    name: str
    kind: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "bytes": self.size}


class TrustedFiles:
    """The run's private copies of the files it reads, by logical name."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="release-trusted-"))
        os.chmod(self.dir, 0o700)
        self.subjects: dict[str, Subject] = {}
        self._copies: dict[str, Path] = {}
        self._sources: dict[str, str] = {}
        self._given: dict[str, str] = {}
        self.sealed: set[str] | None = None
        "Once the approval is checked, only these names may be read (a file the approval missed is refused)."

    def take(self, name: str, kind: str, path: Path, *, covered: bool = True) -> Path:
        """The private copy of `path` under `name` (made on first use; later uses get the same bytes).

        `covered=False` is for the records themselves, which no approval names (they change every release).
        """
        src = str(Path(path).absolute())
        if name in self._copies:
            if self._sources[name] != src:
                raise UsageError(f"{kind} {name!r}: two different files given ({self._sources[name]} and {src})")
            return self._copies[name]
        if covered and self.sealed is not None and name not in self.sealed:
            raise BlockedError(f"{kind} {name!r} ({Path(path).name}) is read by this release but is not covered by"
                               " the policy's approval; nothing was run or published")
        slot = self.dir / str(len(self._copies))
        slot.mkdir()
        copy = slot / Path(path).name
        h = hashlib.sha256()
        size = 0
        with _reading(f"{kind} file", path), open(path, "rb") as src_f, open(copy, "wb") as dst:
            while chunk := src_f.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        os.chmod(copy, 0o400)
        self.subjects[name] = Subject(name, kind, h.hexdigest(), size)
        self._copies[name] = copy
        self._sources[name] = src
        self._given[name] = str(path)
        return copy

    def copy_of(self, name: str) -> Path | None:
        """The private copy already taken under `name` (None when the run has not read it)."""
        return self._copies.get(name)

    @contextlib.contextmanager
    def labels(self) -> Iterator[None]:
        """User errors raised inside name the files the user gave, not this run's private copies."""
        try:
            yield
        except ReleaseError as e:
            for name, copy in self._copies.items():
                e.message = e.message.replace(str(copy), self._given[name])
                e.details = [d.replace(str(copy), self._given[name]) for d in e.details]
            e.args = (e.message,)
            raise

    def manifest(self, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return [s.to_json() for n, s in sorted(self.subjects.items()) if n not in exclude]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def trusted_path(options: dict[str, Any], name: str, kind: str, path: Path | None) -> Path | None:
    """The path a loader should read: the run's private copy during a run, the file itself elsewhere."""
    if path is None:
        return None
    t = options.get("_trusted")
    # The driver's TrustedFiles, or on a Spark executor the copies the driver shipped
    # (release.spark.files.ShippedFiles): either way the bytes the run hashed, not the path.
    if isinstance(t, TrustedFiles) or callable(getattr(t, "take", None)):
        return t.take(name, kind, path)  # type: ignore[union-attr]
    return path


@contextlib.contextmanager
def _reading(what: str, path: Path) -> Iterator[None]:
    """Errors opening or reading a file become usage errors naming it (never a traceback)."""
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a folder, not a file") from None
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot be read ({e.strerror})") from None


def read_once(path: Path, what: str) -> bytes:
    """All bytes of a file from one read (a pipe or a file being rewritten cannot serve two versions)."""
    with _reading(what, path), open(path, "rb") as f:
        return f.read()


def referenced_files(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> list[tuple[str, str, Path]]:
    """(name, kind, path) of every file besides the records a release of `policy` will read, from the plug-ins."""
    from release import registry

    out: dict[str, tuple[str, str, Path]] = {}
    for fn in registry.REFERENCED_FILES:
        for name, kind, path in fn(policy, policy_path, options):
            if path is not None:
                out.setdefault(name, (name, kind, Path(path)))
    return [out[k] for k in sorted(out)]
