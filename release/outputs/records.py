"""`records` output: a record-level file (CSV, Parquet, GeoJSON when it has coordinates)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import Field

from release.context import AssessContext, OutputBuild, StepContext
from release.policy.base import OutputConfig, Role, Schema
from release.registry import register_output


@register_output
class RecordsOutput(OutputConfig):
    """Publish selected columns of every remaining record."""

    kind: Literal["records"] = "records"
    columns: tuple[str, ...] = Field(min_length=1)
    "Columns published, in this order; anything else stays internal."
    sort_by: tuple[str, ...] | None = None
    "Published row order (default: all published columns), so input order never leaks."

    def referenced_columns(self) -> list[str]:
        return list(self.columns) + list(self.sort_by or ())

    def published_columns(self, schema: Schema) -> list[str]:
        return list(self.columns)

    def geo_columns(self, schema: Schema) -> tuple[str, str] | None:
        lat = next((c for c in self.columns if c in schema and schema[c].role == Role.latitude), None)
        lon = next((c for c in self.columns if c in schema and schema[c].role == Role.longitude), None)
        return (lat, lon) if lat and lon else None

    streams: ClassVar[bool] = True
    "The local engine may write this output from the row pipeline's batches (external sort, streamed files)."

    def sort_keys(self) -> list[str]:
        """The canonical order: the declared keys, then every other published column (ascending, nulls last)."""
        return list(dict.fromkeys([*(self.sort_by or ()), *self.columns]))

    def evidence(self, rows: int) -> dict[str, Any]:
        return {"rows": int(rows), "columns": list(self.columns)}

    def build(self, frame: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        out = frame.loc[:, list(self.columns)]
        # A total order on the published values makes the file independent of input order (and of
        # how a batch engine cut it): the declared keys, then every other published column. The
        # streamed path (release.io.extsort) sorts by the same keys, to the same bytes.
        out = out.sort_values(self.sort_keys(), kind="mergesort", na_position="last").reset_index(drop=True)
        return OutputBuild(tables={self.name: out}, geo=self.geo_columns(ctx.schema),
                           evidence=self.evidence(len(out)))

    def assess(self, tables: dict[str, pd.DataFrame], ctx: AssessContext) -> dict[str, Any]:
        t = tables[self.name]
        # The identifier scan runs for every output kind (release.outputs.identifier_scan).
        return {"rows": int(len(t)), "columns": list(t.columns)}
