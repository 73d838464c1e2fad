"""Figures an index uses, read from the tables published in the same release (and public benchmark tables)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from release.errors import PolicyError
from release.indices.compute import Quantity, Sampler, noise_replicates


@dataclass
class Source:
    """One published table an index reads, with what its protection lets a reader know of each cell."""

    kind: str
    "'dp' (noisy counts), 'table' (suppression with margins) or 'file' (a public benchmark table)."
    frame: pd.DataFrame
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: np.ndarray | None = None
    "DP: replicates (R x cells) of published value + simulated noise, clipped at 0."
    raw: np.ndarray | None = None
    total_label: str | None = None


def read_csv_bytes(data: bytes, schema: Any) -> pd.DataFrame:
    from release.io.bundle import read_published_csv

    return read_published_csv(io.BytesIO(data), schema)  # type: ignore[arg-type]


def dp_source(frame: pd.DataFrame, value_column: str, mechanism: str, scale: float, rng: Sampler,
              replicates: int) -> Source:
    v = pd.to_numeric(frame[value_column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    raw = v[None, :] + noise_replicates(rng, (replicates, len(v)), mechanism, scale)
    return Source("dp", frame, v, np.full(len(v), np.nan), np.full(len(v), np.nan),
                  samples=np.maximum(raw, 0.0), raw=raw)


def table_source(frame: pd.DataFrame, dims: tuple[str, ...], measure: str, total: str) -> Source:
    """Published cells with the LP attacker's bounds of every suppressed cell (release/tables audit)."""
    from release.tables.audit import attack
    from release.tables.model import TableShape, build_model, global_values
    from release.tables.output import _parse_published

    parsed = _parse_published(frame, dims, measure, total)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    levels, cube, _ = parsed
    model = build_model([TableShape("t", dims, levels)])
    pub = global_values(model, [cube])
    audit = attack(model, pub, integer=True)
    # Row r of the published frame is local cell `flat[r]` of the cube, global cell local[0][flat[r]].
    codes = [pd.Categorical(frame[d].astype("string"), categories=[*lv, total]).codes
             for d, lv in zip(dims, levels, strict=True)]
    flat = np.ravel_multi_index(tuple(codes), cube.shape)
    g = model.local[0][flat]
    v = pd.to_numeric(frame[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return Source("table", frame, v, audit.lower[g], audit.upper[g], total_label=total)


def file_source(frame: pd.DataFrame, value_column: str) -> Source:
    v = pd.to_numeric(frame[value_column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return Source("file", frame, v, v.copy(), v.copy())


def select(src: Source, group_col: str, group: str | None, where: dict[str, str], dims: tuple[str, ...]) -> Quantity:
    """The figure of one group (None: all groups) among the rows matching `where`.

    Suppressed tables publish every margin: the figure is one cell (the other dimensions at their
    total). DP tables and benchmark files: the sum of the matching cells.
    """
    f = src.frame
    m = np.ones(len(f), dtype=bool)
    for c, want in where.items():
        m &= (f[c].astype("string") == str(want)).fillna(False).to_numpy(dtype=bool)
    gcol = f[group_col].astype("string")
    if src.kind == "table":
        assert src.total_label is not None
        m &= (gcol == (src.total_label if group is None else group)).fillna(False).to_numpy(dtype=bool)
        for d in dims:
            if d != group_col and d not in where:
                m &= (f[d].astype("string") == src.total_label).fillna(False).to_numpy(dtype=bool)
        idx = np.flatnonzero(m)
        if len(idx) != 1:
            return Quantity(np.nan, 0.0, np.inf)
        j = int(idx[0])
        return Quantity(float(src.value[j]), float(src.lower[j]), float(src.upper[j]))
    if group is not None:
        m &= (gcol == group).fillna(False).to_numpy(dtype=bool)
    elif src.total_label is not None:
        m &= (gcol != src.total_label).fillna(False).to_numpy(dtype=bool)
    idx = np.flatnonzero(m)
    vals = src.value[idx]
    point = float(np.sum(vals)) if not np.isnan(vals).any() else np.nan
    if src.kind == "file":
        return Quantity(point, point, point) if len(idx) else Quantity(0.0, 0.0, 0.0)
    assert src.samples is not None and src.raw is not None
    # A blanked DP cell has no published value: its figure cannot be simulated from one.
    pt = point if len(idx) else 0.0
    return Quantity(pt, np.nan, np.nan, samples=src.samples[:, idx].sum(axis=1), raw=src.raw[:, idx].sum(axis=1))


def groups_of(src: Source, group_col: str) -> list[str]:
    if group_col not in src.frame.columns:
        raise PolicyError(f"the published table has no column {group_col!r} to take the groups from")
    g = src.frame[group_col].astype("string").dropna()
    return [x for x in pd.unique(g) if x != src.total_label]
