"""The deployment's configuration (release.toml): approval, signing keys, trusted files, internal folder.

The configuration is the verifier's and the operator's, never the bundle's: trust (keyrings) and the
files a release may read (network, addresses, area layers) come from here or the command line.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.errors import UsageError

CONFIG_ENV = "RELEASE_CONFIG"
DEFAULT_NAME = "release.toml"

_SECTIONS = {"approval", "signing", "files", "internal", "engine"}
"Tables this module reads; other tables (e.g. [sources], [ledger]) belong to plug-ins and are left to them."


@dataclass(frozen=True)
class ApprovalConfig:
    """The `[approval]` table: whether runs need a signed policy, whose keys count, where signatures are."""

    source: Path | None
    "The configuration file these settings came from (None: no configuration at all)."
    required: bool = True
    "Approval is the default: only an explicit `required = false` turns it off."
    explicit_off: bool = False
    "True when the configuration says `required = false` (bundles then say 'not approved')."
    keyring: Path | None = None
    "JSON file of trusted approver public keys."
    approvals: Path | None = None
    "Folder holding `<policy-stem>.approval.json` files; when absent they sit beside the policy."


@dataclass(frozen=True)
class SigningConfig:
    """The `[signing]` table: the release key that signs bundles and the keyring `check` trusts."""

    key: Path | None = None
    "Private Ed25519 release key (PEM) that signs every bundle's manifest."
    keyring: Path | None = None
    "JSON file of trusted release public keys (what `release check` accepts a bundle signature from)."


@dataclass(frozen=True)
class EngineConfig:
    """The `[engine]` table: which runner executes releases and, for Spark, where and how."""

    name: str = "local"
    "local (this process, Arrow batches) or spark (a Spark cluster: release/spark/)."
    master: str | None = None
    "Spark master URL (local[2], spark://host:7077, yarn, k8s://...); None: whatever spark-submit set."
    spark: dict[str, str] = field(default_factory=dict)
    "Spark configuration passed to the session builder as given (spark.executor.memory = \"4g\", ...)."


ENGINES = ("local", "spark")


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything release.toml says that the engine core uses."""

    source: Path | None
    approval: ApprovalConfig
    signing: SigningConfig
    files: dict[str, Path] = field(default_factory=dict)
    "Files supplied by name: network, addresses, streets, and area layers by their layer name."
    internal: Path | None = None
    "Folder for internal diagnostics (outside every publication folder)."
    raw: dict[str, Any] = field(default_factory=dict)
    engine: EngineConfig = field(default_factory=EngineConfig)
    "The `[engine]` table (the runner; --engine overrides its name)."


def config_path(options: dict[str, Any] | None = None) -> Path | None:
    """--config (options['config']), else $RELEASE_CONFIG, else ./release.toml when present."""
    given = (options or {}).get("config") or os.environ.get(CONFIG_ENV)
    if given:
        p = Path(given)
        if not p.is_file():
            raise UsageError(f"configuration {p}: no such file (named by --config or ${CONFIG_ENV})")
        return p
    p = Path.cwd() / DEFAULT_NAME
    return p if p.is_file() else None


def _table(doc: dict[str, Any], name: str, path: Path, keys: set[str]) -> dict[str, Any]:
    section = doc.get(name, {})
    if not isinstance(section, dict):
        raise UsageError(f"configuration {path}: [{name}] must be a table")
    unknown = sorted(set(section) - keys)
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], sorted(keys), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UsageError(f"configuration {path}: {name}.{unknown[0]}: unknown key{hint}")
    return section


def _path(path: Path, where: str, v: Any) -> Path | None:
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise UsageError(f"configuration {path}: {where} must be a path string")
    p = Path(v)
    # Paths are relative to the configuration file, so a configuration works from any directory.
    return p if p.is_absolute() else path.parent / p


def load_config(options: dict[str, Any] | None = None) -> DeploymentConfig:
    """Read the configuration; with none, approval is still required (and cannot be satisfied)."""
    path = config_path(options)
    if path is None:
        return DeploymentConfig(source=None, approval=ApprovalConfig(source=None), signing=SigningConfig())
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"configuration {path}: not valid TOML ({type(e).__name__})") from None
    except OSError as e:
        raise UsageError(f"configuration {path}: cannot be read ({e.strerror})") from None
    a = _table(doc, "approval", path, {"required", "keyring", "approvals"})
    required = a.get("required", True)
    if not isinstance(required, bool):
        raise UsageError(f"configuration {path}: approval.required must be true or false")
    approval = ApprovalConfig(source=path, required=required, explicit_off="required" in a and not required,
                              keyring=_path(path, "approval.keyring", a.get("keyring")),
                              approvals=_path(path, "approval.approvals", a.get("approvals")))
    s = _table(doc, "signing", path, {"key", "keyring"})
    signing = SigningConfig(key=_path(path, "signing.key", s.get("key")),
                            keyring=_path(path, "signing.keyring", s.get("keyring")))
    f = doc.get("files", {})
    if not isinstance(f, dict):
        raise UsageError(f"configuration {path}: [files] must be a table")
    files: dict[str, Path] = {}
    for k, v in f.items():
        if k == "layers":
            if not isinstance(v, dict):
                raise UsageError(f"configuration {path}: [files.layers] must be a table of NAME = \"FILE\"")
            for name, lp in v.items():
                files[str(name)] = _path(path, f"files.layers.{name}", lp)  # type: ignore[assignment]
        else:
            files[str(k)] = _path(path, f"files.{k}", v)  # type: ignore[assignment]
    i = _table(doc, "internal", path, {"folder"})
    return DeploymentConfig(source=path, approval=approval, signing=signing, files=files,
                            internal=_path(path, "internal.folder", i.get("folder")), raw=doc,
                            engine=_engine(doc, path))


def _engine(doc: dict[str, Any], path: Path) -> EngineConfig:
    e = _table(doc, "engine", path, {"name", "master", "spark"})
    name = e.get("name", "local")
    if name not in ENGINES:
        raise UsageError(f"configuration {path}: engine.name must be one of {list(ENGINES)}")
    master = e.get("master")
    if master is not None and (not isinstance(master, str) or not master):
        raise UsageError(f"configuration {path}: engine.master must be a Spark master URL string")
    conf = e.get("spark", {})
    if not isinstance(conf, dict):
        raise UsageError(f"configuration {path}: [engine.spark] must be a table of \"spark.key\" = value")
    for k, v in conf.items():
        if not isinstance(v, str | int | float | bool):
            raise UsageError(f"configuration {path}: engine.spark.{k} must be a string, number or boolean")
    # Spark takes every setting as text; TOML booleans become Spark's lower-case spelling.
    spark = {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in conf.items()}
    return EngineConfig(name=name, master=master, spark=spark)


def load_approval_config(options: dict[str, Any] | None = None) -> ApprovalConfig:
    return load_config(options).approval


def file_options(options: dict[str, Any]) -> dict[str, Any]:
    """Run/check options with the configuration's [files] filled in where the command line gave none."""
    cfg = load_config(options)
    out = dict(options)
    for name, p in cfg.files.items():
        out.setdefault(name, str(p))
    return out
