"""The engine's configuration file (release.toml): where trusted approval keys and approvals live."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from release.errors import UsageError

CONFIG_ENV = "RELEASE_CONFIG"
DEFAULT_NAME = "release.toml"


@dataclass(frozen=True)
class ApprovalConfig:
    """The `[approval]` table: whether runs need a signed policy, whose keys count, where signatures are."""

    source: Path | None
    "The configuration file these settings came from (None: no configuration, nothing required)."
    required: bool = False
    "When true, `release run` refuses a policy without a valid signature from a trusted key."
    keyring: Path | None = None
    "JSON file of trusted public keys."
    approvals: Path | None = None
    "Folder holding `<policy-stem>.approval.json` files; when absent they sit beside the policy."


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


def load_approval_config(options: dict[str, Any] | None = None) -> ApprovalConfig:
    path = config_path(options)
    if path is None:
        return ApprovalConfig(source=None)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"configuration {path}: not valid TOML ({e})") from None
    section = doc.get("approval", {})
    if not isinstance(section, dict):
        raise UsageError(f"configuration {path}: [approval] must be a table")
    unknown = sorted(set(section) - {"required", "keyring", "approvals"})
    if unknown:
        raise UsageError(f"configuration {path}: approval.{unknown[0]}: unknown key")
    required = section.get("required", False)
    if not isinstance(required, bool):
        raise UsageError(f"configuration {path}: approval.required must be true or false")

    def rel(key: str) -> Path | None:
        v = section.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise UsageError(f"configuration {path}: approval.{key} must be a path string")
        p = Path(v)
        # Paths are relative to the configuration file, so a config works from any directory.
        return p if p.is_absolute() else path.parent / p

    keyring = rel("keyring")
    if required and keyring is None:
        raise UsageError(f"configuration {path}: approval.required is true but approval.keyring is not set")
    return ApprovalConfig(source=path, required=required, keyring=keyring, approvals=rel("approvals"))
