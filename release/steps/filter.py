"""`filter`: exclude rows matching a condition (unfounded occurrences, an offence class)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd

from release.batches import counted, finish_evidence
from release.context import StepContext
from release.policy.base import Condition, StepConfig
from release.registry import register_step


@register_step
class FilterStep(StepConfig):
    """Exclude rows that must never be published (e.g. unfounded or sexual offences)."""

    type: Literal["filter"] = "filter"
    row_local: ClassVar[bool] = True
    exclude: Condition
    "Rows matching this condition are removed before any output is built."
    reason: str = ""
    "Why these rows are excluded (shown in the report)."

    def referenced_columns(self) -> list[str]:
        return [self.exclude.column]

    def describe(self) -> str:
        return f"filter out rows where {self.exclude.describe()}" + (f" ({self.reason})" if self.reason else "")

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out, ev = self.apply_batch(frame, ctx)
        return out, finish_evidence(ev)

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        m = self.exclude.mask(frame)
        return frame.loc[~m.to_numpy()].reset_index(drop=True), {
            "rows_excluded": counted(int(m.sum())), "condition": self.exclude.describe(), "reason": self.reason}
