"""Building blocks of the policy language shared by the core and every step or output plug-in."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from release.context import AssessContext, OutputBuild, StepContext


class StrictModel(BaseModel):
    """Frozen, unknown keys forbidden: a typo in a policy is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ColumnType(StrEnum):
    string = "string"
    category = "category"
    integer = "integer"
    float = "float"
    boolean = "boolean"
    datetime = "datetime"
    date = "date"


class Role(StrEnum):
    direct_identifier = "direct-identifier"
    quasi_identifier = "quasi-identifier"
    sensitive = "sensitive"
    latitude = "latitude"
    longitude = "longitude"
    time = "time"
    privacy_unit = "privacy-unit"
    record_id = "record-id"
    area = "area"
    other = "other"


class ColumnSpec(StrictModel):
    """One column of the input schema: its type, its privacy role and its validation rules."""

    type: ColumnType
    "Declared type; a value that cannot be read as this type is an input error."
    role: Role = Role.other
    "Privacy role: decides what the engine may publish and how the gate treats it."
    required: bool = True
    "A required column must have a value on every row (no silent gaps)."
    categories: tuple[str, ...] | None = None
    "Allowed values; anything else is an input error (catches schema drift and typos)."
    min: float | None = None
    "Smallest allowed value (numbers) — out-of-range values are input errors."
    max: float | None = None
    "Largest allowed value (numbers)."
    allow_future: bool = False
    "Dates after the run time are refused unless this is set."
    format: str | None = None
    "strptime format for datetime/date columns; ISO 8601 when absent."
    description: str | None = None
    "Human description copied into datapackage.json."

    @model_validator(mode="after")
    def _range(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class Condition(StrictModel):
    """A row predicate: rows whose `column` equals one of `in` (or is null, with `is_null`)."""

    column: str
    equals: str | int | float | bool | None = None
    in_: tuple[str | int | float | bool, ...] | None = Field(default=None, alias="in")
    not_in: tuple[str | int | float | bool, ...] | None = None
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        given = [x is not None for x in (self.equals, self.in_, self.not_in, self.is_null)]
        if sum(given) != 1:
            raise ValueError("give exactly one of equals, in, not_in, is_null")
        return self

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        col = frame[self.column]
        if self.is_null is not None:
            m = col.isna()
            return m if self.is_null else ~m
        if self.equals is not None:
            return (col == self.equals).fillna(False).astype(bool)
        values = list(self.in_ if self.in_ is not None else self.not_in or ())
        m = col.isin(values).fillna(False).astype(bool)
        return m if self.in_ is not None else ~m & col.notna()

    def describe(self) -> str:
        if self.is_null is not None:
            return f"{self.column} is {'null' if self.is_null else 'not null'}"
        if self.equals is not None:
            return f"{self.column} == {self.equals!r}"
        if self.in_ is not None:
            return f"{self.column} in {list(self.in_)}"
        return f"{self.column} not in {list(self.not_in or ())}"


Schema = dict[str, ColumnSpec]
"""The columns a frame holds at some point of the plan, with their declared specs."""


class StepConfig(StrictModel):
    """Base of every step. Subclasses set `type: Literal[...]` and implement `apply`.

    A step is a pure function of a frame and its own settings returning the new frame and
    its evidence; it does no I/O except through the context it is handed.
    """

    type: str
    summary: ClassVar[str] = ""
    row_local: ClassVar[bool] = False
    """True when `apply` is a per-row function: output row i depends only on input row i, the settings
    and keyed secrets, and its evidence merges across batches (release.batches.merge_evidence). The
    batch engine then runs it batch by batch (and the Spark runner partition-wise)."""

    def referenced_columns(self) -> list[str]:
        """Columns this step reads; checked against the schema before any record is read."""
        return []

    def schema_after(self, schema: Schema) -> Schema:
        """The schema after this step runs (for plan-time checks of later steps/outputs)."""
        return schema

    def describe(self) -> str:
        """One line for `release plan`."""
        return self.summary or self.type

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        """Extra plan details (e.g. DP noise scale) shown before any record is read."""
        return {}

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        raise NotImplementedError

    def apply_batch(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        """`apply` to one batch, its evidence unfinished (release.batches.Deferred figures merge across batches)."""
        return self.apply(frame, ctx)


class OutputConfig(StrictModel):
    """Base of every output kind (`records`, `dp-table`, `table`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    "File stem of the output; lower-case letters, digits, '-' and '_'."
    kind: str
    description: str | None = None
    "Shown in datapackage.json and the report."

    def referenced_columns(self) -> list[str]:
        return []

    def frame_columns(self, policy: Any, schema: Schema) -> list[str] | None:
        """The only columns of the run's frame `build` reads (release.batches.ROW_DIGEST among them: the
        bounding score of each row's every column, computed per batch), so the engine may keep just these while
        the batches go by; None (the default): `build` needs the whole frame."""
        return None

    def accumulator(self, schema: Schema) -> Any | None:
        """An accumulator over the row pipeline's batches (create / add / finish; `.columns`, what it
        reads) from which build_accumulated builds this output with no frame; None (the default):
        `build` needs the rows."""
        return None

    def build_accumulated(self, acc: Any, state: Any, ctx: Any) -> Any:
        """The output's build from its accumulator's state (only when accumulator() gave one)."""
        raise NotImplementedError(f"{type(self).__name__} has no accumulator")

    def published_columns(self, schema: Schema) -> list[str]:
        """Columns of the published file(s), for the plan and the direct-identifier check."""
        return []

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {}

    def published_stems(self, schema: Schema) -> list[str]:
        """File stems this output publishes (each as CSV and Parquet): what `release check` expects to find."""
        return [self.name]

    def stem_columns(self, stem: str, schema: Schema) -> list[str]:
        """The columns of one published table (margins and linked tables publish fewer than the output)."""
        return self.published_columns(schema)

    def geo_columns(self, schema: Schema) -> tuple[str, str] | None:
        """(latitude, longitude) when the published tables carry points (a GeoJSON file is added)."""
        return None

    def budget(self) -> list[dict[str, Any]]:
        """DP spends this output makes ({'epsilon': .., 'rho': .., 'delta': ..}); [] when none."""
        return []

    def build(self, frame: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        raise NotImplementedError

    def assess(self, tables: dict[str, pd.DataFrame], ctx: AssessContext) -> dict[str, Any]:
        """Figures recomputed from the published tables alone (used by run and check)."""
        return {}


Verdict = Literal["pass", "blocked"]
