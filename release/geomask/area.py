"""`geomask-area`: replace each point by the area holding it (TPS publishes hate crimes this way)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from release.batches import counted, finish_evidence
from release.context import StepContext
from release.geomask.common import NSA, coord_columns, coordinates, geocodable, inside_bbox
from release.geomask.network import AreaLayer, area_text, areas_for
from release.geomask.projection import projector_for
from release.policy.base import ColumnSpec, ColumnType, Role, Schema, StepConfig
from release.registry import register_step


@register_step
class AreaStep(StepConfig):
    """Point-in-polygon against an area layer; the coordinates are then removed from every row."""

    type: Literal["geomask-area"] = "geomask-area"
    row_local: ClassVar[bool] = True
    areas: AreaLayer
    "Polygon layer (neighbourhoods, divisions) the points are located in."
    column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    "Column receiving the area value (created, or replaced when it exists); NSA outside every polygon."

    def schema_after(self, schema: Schema) -> Schema:
        lat, lon = coord_columns(schema, "geomask-area")
        out = {c: s for c, s in schema.items() if c not in (lat, lon)}
        prev = schema.get(self.column)
        out[self.column] = ColumnSpec(type=ColumnType.string, role=Role.area,
                                      description=(prev.description if prev else None)
                                      or f"area located from the point ({self.areas.layer}); NSA when none")
        return out

    def describe(self) -> str:
        return f"replace coordinates by the {self.areas.layer} area holding the point (into {self.column})"

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out, ev = self.apply_batch(frame, ctx)
        return out, finish_evidence(ev)

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        lat_c, lon_c = coord_columns(ctx.schema, "geomask-area")
        proj = projector_for(ctx.policy.jurisdiction)
        layer = areas_for(self.areas, ctx.options, ctx.policy_path, proj)
        la, lo = coordinates(frame, lat_c, lon_c)
        ok = geocodable(la, lo) & inside_bbox(la, lo, ctx.policy.jurisdiction.bbox)
        rows = np.flatnonzero(ok)
        x, y = proj.to_metric(lo[rows], la[rows])
        found = np.full(len(frame), None, dtype=object)
        found[rows] = layer.locate(x, y)
        nsa = pd.isna(found)
        found[nsa] = NSA
        changed = None
        if self.column in frame.columns:
            before = area_text(frame[self.column])
            changed = int((pd.Series(before, dtype="string").fillna("") != pd.Series(found, dtype="string")).sum())
        out = frame.drop(columns=[lat_c, lon_c]).copy()
        out[self.column] = pd.Series(found, index=frame.index, dtype="string")
        ctx.manifest.setdefault("areas", {})[self.areas.layer] = layer.manifest
        return out, {"method": "area", "layer": self.areas.layer, "column": self.column,
                     "located": counted(int((~nsa).sum())), "withheld": counted(int(len(frame))),
                     "nsa": {"count": counted(int(nsa.sum())),
                             "reasons": {"not-geocoded-or-outside": counted(int((~ok).sum())),
                                         "outside-areas": counted(int((ok & nsa).sum()))}},
                     "area_changed": counted(changed)}
