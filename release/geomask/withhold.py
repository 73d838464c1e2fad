"""`withhold-location`: remove the coordinates of sensitive rows and keep only their area."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from release.batches import counted, finish_evidence
from release.context import StepContext
from release.geomask.common import coord_columns, coordinates, point_stats_deferred, privacy_unit
from release.policy.base import Condition, Schema, StepConfig
from release.registry import register_step


@register_step
class WithholdLocationStep(StepConfig):
    """Rows matching every condition keep their row and area but lose their coordinates."""

    type: Literal["withhold-location"] = "withhold-location"
    row_local: ClassVar[bool] = True
    when: tuple[Condition, ...] = Field(min_length=1)
    "Conditions that must all hold (e.g. an offence class at a residence): a map point would point at a victim."
    reason: str = Field(min_length=1)
    "Why these locations are withheld (shown in the report and the check)."

    def referenced_columns(self) -> list[str]:
        return [c.column for c in self.when]

    def schema_after(self, schema: Schema) -> Schema:
        coord_columns(schema, "withhold-location")
        return schema

    def describe(self) -> str:
        return "withhold coordinates where " + " and ".join(c.describe() for c in self.when) + f" ({self.reason})"

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        m = np.ones(len(frame), dtype=bool)
        for c in self.when:
            m &= c.mask(frame).to_numpy(dtype=bool)
        return m

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out, ev = self.apply_batch(frame, ctx)
        return out, finish_evidence(ev)

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        lat_c, lon_c = coord_columns(ctx.schema, "withhold-location")
        m = self.mask(frame)
        la, lo = coordinates(frame, lat_c, lon_c)
        had = m & ~np.isnan(la) & ~np.isnan(lo)
        out = frame.copy()
        out[lat_c] = np.where(m, np.nan, la)
        out[lon_c] = np.where(m, np.nan, lo)
        return out, {"method": "withheld", "withheld": counted(int(m.sum())), "had_coordinates": counted(int(had.sum())),
                     "condition": " and ".join(c.describe() for c in self.when), "reason": self.reason,
                     "**points": point_stats_deferred(out, lat_c, lon_c, privacy_unit(ctx.schema, ctx))}
