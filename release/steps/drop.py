"""`drop`: remove columns, by name or by role (direct identifiers above all)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import model_validator

from release.context import StepContext
from release.policy.base import Role, Schema, StepConfig
from release.registry import register_step


@register_step
class DropStep(StepConfig):
    """Drop columns so they can never reach an output."""

    type: Literal["drop"] = "drop"
    row_local: ClassVar[bool] = True
    columns: tuple[str, ...] = ()
    "Columns to remove."
    roles: tuple[Role, ...] = ()
    "Remove every column with one of these roles (e.g. direct-identifier)."

    @model_validator(mode="after")
    def _some(self) -> DropStep:
        if not self.columns and not self.roles:
            raise ValueError("give columns or roles to drop")
        return self

    def referenced_columns(self) -> list[str]:
        return list(self.columns)

    def _targets(self, schema: Schema) -> list[str]:
        by_role = [c for c, s in schema.items() if s.role in self.roles]
        return list(dict.fromkeys([*self.columns, *by_role]))

    def schema_after(self, schema: Schema) -> Schema:
        drop = set(self._targets(schema))
        return {c: s for c, s in schema.items() if c not in drop}

    def describe(self) -> str:
        parts = list(self.columns) + [f"role:{r.value}" for r in self.roles]
        return f"drop {', '.join(parts)}"

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        targets = [c for c in self._targets(ctx.schema) if c in frame.columns]
        return frame.drop(columns=targets), {"dropped_columns": targets}
