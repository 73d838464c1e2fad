"""A release's predecessors: verified signed bundles of the publication folder drawn from the same source.

Found by registered source, never by dataset name: a renamed dataset, or another dataset drawn from
the same records, is a predecessor as soon as its outputs share a published column with this
release's. Only bundles whose signature verifies (the verifier's keyring, as `release check`) and whose
files match the manifest's sha256 are read; a bundle that does not verify cannot vouch for its source,
so it is listed as unverified, and the series finding fails when it might belong to this source.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from release.io.bundle import sha256_bytes
from release.series.config import source_name


@dataclass
class Predecessor:
    """One verified earlier bundle of the same source, with the published tables that share columns."""

    bundle: Path
    dataset: str
    release_id: str
    created_utc: str
    policy: Any
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    "published CSV name -> its table (text values, as the public reads it)"
    shared: dict[str, list[str]] = field(default_factory=dict)
    "published CSV name -> columns it shares with this release"
    named: int = 0
    "how many predecessors its own manifest names (orders releases published within one second)"

    def ref(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "release_id": self.release_id, "created_utc": self.created_utc,
                "files": sorted(self.shared), "shared_columns": sorted({c for v in self.shared.values() for c in v})}


@dataclass
class Discovery:
    source: str | None
    predecessors: list[Predecessor] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    "bundles (dataset/release-id) that do not verify and may be of this source"


def bundles_in(folder: Path) -> list[Path]:
    """Every bundle folder (<dataset>/<release-id>/ with a manifest) of a publication folder, oldest first."""
    if not folder.is_dir():
        return []
    out = [b for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
           for b in d.iterdir() if b.is_dir() and not b.name.startswith(".") and (b / "manifest.json").is_file()]
    return sorted(out, key=lambda b: (b.name, b.parent.name))


def _read(bundle: Path, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """manifest and verified file bytes, or None when the signature or a hash does not verify."""
    from release.governance.signing import SIGNATURE_FILE, verify_manifest

    try:
        mb = (bundle / "manifest.json").read_bytes()
        sig = (bundle / SIGNATURE_FILE).read_bytes() if (bundle / SIGNATURE_FILE).is_file() else None
        if verify_manifest(mb, sig, options).status != "pass":
            return None
        man = json.loads(mb)
        files = man.get("files")
        if not isinstance(files, dict):
            return None
        data = {}
        for rel, want in files.items():
            if not isinstance(rel, str) or "/" in rel or not (rel.endswith(".csv") or rel == "policy.yaml"):
                continue
            b = (bundle / rel).read_bytes()
            if sha256_bytes(b) != want:
                return None
            data[rel] = b
        return man, data
    except (OSError, ValueError):
        return None


def _claimed_source(bundle: Path) -> str | None:
    """The source an unverified bundle's policy claims (only to decide whether it might matter)."""
    from release.policy.loader import parse_policy

    try:
        return source_name(parse_policy((bundle / "policy.yaml").read_text(encoding="utf-8-sig"), "policy.yaml"))
    except Exception:  # noqa: BLE001 - an unreadable policy might be anyone's
        return "?"


def published_columns(policy: Any) -> set[str]:
    from release.plan import compile_plan

    plan = compile_plan(policy)
    return {c for o in plan.outputs for c in (o.get("columns") or [])}


def find_predecessors(folder: Path, policy: Any, options: dict[str, Any], *,
                      before: tuple[str, set[str]] | None = None, exclude: Path | None = None) -> Discovery:
    """Verified bundles of `folder` drawn from the policy's source whose outputs share published columns.

    `before` (created_utc, release ids) limits them to bundles published earlier (what `release check`
    re-discovers for a bundle): created before that second, or within it and named by the bundle's
    manifest (times have one-second resolution); a run takes every bundle already in the folder.
    """
    from release.plan import compile_plan
    from release.policy.loader import parse_policy

    src = source_name(policy)
    disc = Discovery(source=src)
    if src is None:
        return disc
    mine = published_columns(policy)
    for b in bundles_in(folder):
        if exclude is not None and b.resolve() == exclude.resolve():
            continue
        got = _read(b, options)
        if got is None:
            claimed = _claimed_source(b)
            if claimed in (src, "?"):
                disc.unverified.append(f"{b.parent.name}/{b.name}")
            continue
        man, data = got
        if before is not None:
            created = str(man.get("created_utc"))
            if created > before[0] or (created == before[0] and str(man.get("release_id")) not in before[1]):
                continue
        try:
            pol = parse_policy(data["policy.yaml"].decode("utf-8-sig"), "policy.yaml")
            schema = compile_plan(pol).final_schema
        except Exception:  # noqa: BLE001 - a verified bundle whose policy no longer loads cannot be joined
            disc.unverified.append(f"{b.parent.name}/{b.name}")
            continue
        if source_name(pol) != src:
            continue
        ser = man.get("series") if isinstance(man.get("series"), dict) else {}
        pred = Predecessor(bundle=b, dataset=str(man.get("dataset")), release_id=str(man.get("release_id")),
                           created_utc=str(man.get("created_utc")), policy=pol,
                           named=len(ser.get("predecessors") or []) if isinstance(ser, dict) else 0)
        for rel, raw in sorted(data.items()):
            if not rel.endswith(".csv"):
                continue
            frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
            shared = sorted(set(map(str, frame.columns)) & mine)
            if shared:
                pred.tables[rel] = frame
                pred.shared[rel] = shared
        del schema
        if pred.shared:
            disc.predecessors.append(pred)
    # A later release saw (and names) every earlier one: that orders releases of the same second.
    disc.predecessors.sort(key=lambda p: (p.created_utc, p.named, p.release_id))
    return disc
