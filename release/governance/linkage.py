"""Linkage across a publication folder, and identifiers in a bundle: no dataset joins another unless declared.

Two checks:
- `published-identifier` (every output, run and check): a record-id or privacy-unit column is never
  published unless a step pseudonymized it (the gate blocks the run, exit 1).
- `cross-dataset-linkage` (`release check-all`, a FOLDER_CHECKS hook): every identifier-like column
  (record ids, privacy units, pseudonyms, hex/uuid-like codes, free text) of one dataset is compared with
  those of every other dataset of the folder. Values shared beyond chance are reported; the finding
  fails when the join would attach points or finer values to records another dataset publishes without
  them, unless both policies declared the link with the same pseudonymize `link_group`.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from release import registry
from release.context import AssessContext, Finding
from release.policy.base import Role

_IDENT_ROLES = (Role.record_id, Role.privacy_unit, Role.direct_identifier)
# Code-like values: letters/dashes then at least 8 hex or alphanumeric characters holding a digit (GO-3f2a...,
# uuids, 'R000123'); dates and plain numbers are not identifiers by their look (they are quasi-identifiers).
_CODE = re.compile(r"^[A-Za-z]{0,6}[-_]?(?=[0-9A-Za-z-]*\d)[0-9A-Za-z-]{8,}$")
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]\d{2}(:\d{2}){0,2})?$")
_NUMBER = re.compile(r"^-?\d{1,9}(\.\d+)?$")  # long digit strings (12-digit ids) are codes
_POINT_ROLES = (Role.latitude, Role.longitude)
_FINE_ROLES = (Role.latitude, Role.longitude, Role.area, Role.time, Role.quasi_identifier)


# ------------------------------------------------------------------------------ published identifiers


def published_identifier_assessor(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """Record-id and privacy-unit columns are never published unless a step pseudonymized them."""
    from release.plan import compile_plan

    schema = compile_plan(actx.policy).final_schema
    # A record id or unit id a pseudonymize step replaced (keyed or random) is a pseudonym, no longer the id.
    replaced = {c for st in actx.policy.steps if getattr(st, "type", None) == "pseudonymize"
                for c in getattr(st, "columns", ())}
    ids = {c for c, spec in schema.items() if spec.role in (Role.record_id, Role.privacy_unit)} - replaced
    for stem, t in tables.items():
        leaked = sorted(ids & {str(c) for c in t.columns})
        actx.finding("published-identifier", not leaked,
                     "no record-id or privacy-unit column published" if not leaked else
                     f"record-id or privacy-unit column(s) {leaked} published as they are: pseudonymize them"
                     " (a pseudonymize step) or leave them out", file=actx.files.get(stem))
    return {}


# --------------------------------------------------------------------------------- identifier-like


def looks_like_identifier(values: pd.Series) -> str | None:
    """'code' or 'free text' when the values look like identifiers (not dates, numbers or categories)."""
    v = values.dropna().astype(str)
    v = v[v != ""]
    if len(v) < 10:
        return None
    uniq = pd.unique(v.to_numpy())
    if len(uniq) < 0.5 * len(v):
        return None  # a category repeated across records is not an identifier
    sample = pd.Series(uniq[:2000])
    if sample.str.match(_DATE).mean() > 0.5 or sample.str.match(_NUMBER).mean() > 0.5:
        return None
    if sample.str.match(_CODE).mean() >= 0.9:
        return "code"
    if sample.str.len().mean() >= 25 and sample.str.contains(" ").mean() >= 0.9 and len(uniq) >= 0.9 * len(v):
        return "free text"
    return None


@dataclass
class PublishedTable:
    """One published table of a dataset, as the public reads it (text values), with what its policy says."""

    dataset: str
    bundle: str
    file: str
    frame: pd.DataFrame
    roles: dict[str, Role] = field(default_factory=dict)
    "Final-schema role of each published column the policy declares."
    pseudonymized: dict[str, str | None] = field(default_factory=dict)
    "Columns a pseudonymize step replaced -> their link group (None: not declared)."

    def identifiers(self) -> dict[str, str]:
        """column -> why it is identifier-like."""
        out: dict[str, str] = {}
        for c in self.frame.columns:
            if c in self.pseudonymized:
                out[c] = "pseudonym"
            elif self.roles.get(c) in _IDENT_ROLES:
                out[c] = str(self.roles[c].value)
            else:
                kind = looks_like_identifier(self.frame[c])
                if kind:
                    out[c] = kind
        return out

    def points(self) -> list[str]:
        named = [c for c in self.frame.columns if self.roles.get(c) in _POINT_ROLES]
        return named or [c for c in self.frame.columns if str(c).lower() in ("latitude", "longitude", "lat", "lon")]


def _beyond_chance(shared: int, na: int, nb: int) -> bool:
    """Shared distinct values more than coincidence explains.

    Code-like values of 8+ random characters collide by chance with probability below na*nb/36^8
    (< 1e-4 for 10^4 x 10^4 values); two shared values, or 1% of the smaller set, are a link.
    """
    return shared >= max(2, math.ceil(0.01 * min(na, nb)))


def _attaches(a: PublishedTable, ca: str, b: PublishedTable, cb: str) -> list[str]:
    """What joining B's rows to A's on the shared values gives B's records that B does not publish."""
    left = a.frame[[ca, *[c for c in a.frame.columns if c != ca]]].dropna(subset=[ca])
    right = b.frame.dropna(subset=[cb])
    joined = right.merge(left, left_on=cb, right_on=ca, how="inner", suffixes=("", "__a"))
    if joined.empty:
        return []
    gains = []
    pts = a.points()
    if pts:
        have_a = joined[[c + "__a" if c in b.frame.columns else c for c in pts]].notna().all(axis=1)
        have_b = joined[pts].notna().all(axis=1) if all(c in b.frame.columns for c in pts) else False
        n = int((have_a & ~have_b).sum())
        if n:
            gains.append(f"points ({', '.join(pts)}) for {n} record(s)")
    for c in a.frame.columns:
        if c == ca or a.roles.get(c) not in _FINE_ROLES or c in pts:
            continue
        if c not in b.frame.columns:
            n = int(joined[c].notna().sum())
            if n:
                gains.append(f"{c} for {n} record(s)")
            continue
        av, bv = joined[c + "__a"], joined[c]
        a_txt = av.fillna("").astype(str).to_numpy(dtype=str)
        b_txt = bv.fillna("").astype(str).to_numpy(dtype=str)
        # Finer: A has a value where B has none, or A's value extends B's (2024-03-05 14:00 vs 2024-03-05).
        finer = av.notna().to_numpy() & (a_txt != b_txt) & (bv.isna().to_numpy() | np.char.startswith(a_txt, b_txt))
        n = int(finer.sum())
        if n:
            gains.append(f"finer {c} for {n} record(s)")
    return gains


def linkage_findings(tables: list[PublishedTable]) -> list[Finding]:
    """Compare every identifier-like column of every dataset with every other dataset's."""
    idents = [(t, c, kind, np.unique(t.frame[c].dropna().astype(str).to_numpy()))
              for t in tables for c, kind in t.identifiers().items()]
    out: list[Finding] = []
    for i, (a, ca, ka, va) in enumerate(idents):
        for b, cb, kb, vb in idents[i + 1:]:
            if a.dataset == b.dataset or len(va) == 0 or len(vb) == 0:
                continue
            shared = len(np.intersect1d(va, vb, assume_unique=True))
            if not shared or not _beyond_chance(shared, len(va), len(vb)):
                continue
            where = f"{a.dataset} {a.file} {ca} ({ka}) and {b.dataset} {b.file} {cb} ({kb}) share {shared} value(s)"
            ga, gb = a.pseudonymized.get(ca), b.pseudonymized.get(cb)
            if ga is not None and ga == gb:
                out.append(Finding("cross-dataset-linkage", True, f"{where}: a link declared by both policies"
                                   f" (link_group {ga})", file=f"{a.bundle} {b.bundle}"))
                continue
            gains = [f"{b.dataset} gains " + g for g in _attaches(a, ca, b, cb)]
            gains += [f"{a.dataset} gains " + g for g in _attaches(b, cb, a, ca)]
            if gains:
                out.append(Finding("cross-dataset-linkage", False, f"{where}: an undeclared link; joining them gives "
                                   + "; ".join(gains[:4]), file=f"{a.bundle} {b.bundle}", figure=shared))
            else:
                out.append(Finding("cross-dataset-linkage", True, f"warning: {where} (undeclared), though the join"
                                   " attaches no point or finer value", file=f"{a.bundle} {b.bundle}", figure=shared))
    if not out:
        n = len({t.dataset for t in tables})
        out.append(Finding("cross-dataset-linkage", True, f"no identifier-like values shared between the {n}"
                           f" dataset(s) of the folder ({len(idents)} identifier-like column(s) compared)"))
    return out


def tables_of(bundle: Path) -> list[PublishedTable]:
    """The published CSV tables of one bundle, with roles and pseudonymized columns from its policy.yaml."""
    from release.plan import compile_plan
    from release.policy.loader import parse_policy

    man = json.loads((bundle / "manifest.json").read_bytes())
    files = man.get("files") if isinstance(man, dict) else None
    if not isinstance(files, dict):
        return []
    roles: dict[str, Role] = {}
    pseud: dict[str, str | None] = {}
    try:
        policy = parse_policy((bundle / "policy.yaml").read_text(encoding="utf-8-sig"), "policy.yaml")
        roles = {c: s.role for c, s in compile_plan(policy).final_schema.items()}
        for step in policy.steps:
            if getattr(step, "type", None) == "pseudonymize" and getattr(step, "method", None) == "hmac":
                pseud.update({c: getattr(step, "link_group", None) for c in getattr(step, "columns", ())})
    except Exception:  # noqa: BLE001 - a bundle whose policy does not load is refused by its own check
        pass
    out = []
    for rel in sorted(files):
        if not rel.endswith(".csv"):
            continue
        try:
            frame = pd.read_csv(io.BytesIO((bundle / rel).read_bytes()), dtype=str, keep_default_na=False,
                                na_values=[""], encoding="utf-8")
        except (OSError, ValueError):
            continue
        out.append(PublishedTable(dataset=str(man.get("dataset")), bundle=bundle.name, file=rel, frame=frame,
                                  roles=roles, pseudonymized={c: g for c, g in pseud.items() if c in frame.columns}))
    return out


def folder_linkage_check(folder: Path, bundles: list[Path], options: dict[str, Any]) -> list[Finding]:
    """FOLDER_CHECKS hook: no two datasets of the folder link through identifier-like values unless declared."""
    tables = [t for b in bundles for t in tables_of(b)]
    return linkage_findings(tables)


def _register() -> None:
    registry.add_hook(registry.FOLDER_CHECKS, folder_linkage_check)
    for kind in ("records", "table", "dp-table"):
        if published_identifier_assessor not in registry.ASSESSORS.get(kind, []):
            registry.register_assessor(kind)(published_identifier_assessor)


_register()
