"""The policy: the privacy office's declarative contract for one published dataset."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, Field, field_validator, model_validator

from release import registry
from release.policy.base import ColumnSpec, Role, StrictModel

registry.load_plugins()


class Dataset(StrictModel):
    """What is published and by whom (copied into datapackage.json)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    "Folder name of the dataset's bundles: lower-case letters, digits and '-'."
    title: str
    description: str = ""
    publisher: str = Field(min_length=1)
    "Who publishes the dataset (datapackage.json sources): required, never a silent default."
    license: str = Field(default="Open Government Licence – Toronto", validation_alias=AliasChoices("license", "licence"))
    "Licence of the published files; `licence` (British spelling) is accepted too."

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "license" in data and "licence" in data:
            raise ValueError("give license or licence, not both")
        return data


class Jurisdiction(StrictModel):
    """Where records may lie; points outside are input errors (or NSA after geomasking)."""

    bbox: tuple[float, float, float, float]
    "min_lon, min_lat, max_lon, max_lat (WGS84)."
    crs: int | None = None
    "EPSG code of a metric projection for distances (2952 for Toronto); UTM chosen when absent."
    outside: Literal["error", "nsa"] = "error"
    "Points outside the bbox: an input error, or kept with coordinates removed and area NSA (as TPS does)."
    zero_is_missing: bool = True
    "Read 0,0 coordinates as 'not geocoded' (null), the TPS convention, rather than as a location."

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        min_lon, min_lat, max_lon, max_lat = v
        if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
            raise ValueError("must be [min_lon, min_lat, max_lon, max_lat] with min < max, lon in [-180, 180], lat in [-90, 90]")
        return v


class InputSource(StrictModel):
    """Records read from a database (release/io/postgres.py) when the run gives no --input file."""

    connection: str
    "Name of the connection in release.toml [connections.NAME]: the server and where its password is, never the password."
    table: str | None = None
    "SCHEMA.TABLE to read, every row (names as stored, no case folding)."
    query: str | None = None
    "A SELECT whose result rows are the records; the manifest records its sha256."

    @model_validator(mode="after")
    def _one(self) -> InputSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class InputSchema(StrictModel):
    """The internal records' schema: every column, its type and its privacy role."""

    columns: dict[str, ColumnSpec]
    "Every input column. A column not declared here is schema drift and refused."
    record_id: str
    "Column that identifies a record; must be unique."
    on_invalid: Literal["refuse", "exclude"] = "refuse"
    "refuse: any invalid row stops the run (exit 2). exclude: invalid rows are dropped and counted."
    allow_extra_columns: bool = False
    "Accept input columns the policy does not declare (they are dropped at once)."
    encoding: Literal["utf-8", "cp1252", "latin-1"] = "utf-8"
    "Text encoding of a CSV input (a UTF-8 byte-order mark is skipped); undecodable bytes are located errors."
    delimiter: Literal["comma", "tab", "semicolon", "pipe"] = "comma"
    "Field separator of a CSV input."
    allow_empty: bool = False
    "Publish an empty release when the input holds no record; otherwise an empty input is an error (exit 2)."
    max_field_length: int = Field(default=65_536, ge=1, le=1 << 28)
    "Longest value (characters) a field may hold; longer ones are input errors (a broken quote or a dump)."
    source: InputSource | None = None
    "Where the records are when `release run` gets no --input: a database table or query (docs/postgres.md)."

    @field_validator("columns")
    @classmethod
    def _printable_names(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        import re

        from release.textsafe import UNSAFE_CHARS

        bad = [i + 1 for i, n in enumerate(v) if not n.strip() or re.search(UNSAFE_CHARS + "|[\r\n\t]", n)]
        if bad:
            raise ValueError(f"column names must be non-empty and hold no control characters (columns {bad})")
        return v

    @model_validator(mode="after")
    def _rid(self) -> InputSchema:
        if self.record_id not in self.columns:
            raise ValueError(f"record_id {self.record_id!r} is not a declared column")
        lat = [c for c, s in self.columns.items() if s.role == Role.latitude]
        lon = [c for c, s in self.columns.items() if s.role == Role.longitude]
        if len(lat) > 1 or len(lon) > 1 or len(lat) != len(lon):
            raise ValueError("declare at most one latitude and one longitude column, both or neither")
        return self

    def role_columns(self, role: Role) -> list[str]:
        return [c for c, s in self.columns.items() if s.role == role]


class Gate(StrictModel):
    """Thresholds that decide the verdict; a release breaking any of them is blocked."""

    min_k: int | None = Field(default=None, ge=2)
    "Smallest equivalence class allowed in any record-level output."
    min_l: float | None = Field(default=None, ge=1)
    "Smallest l-diversity allowed on any declared sensitive column."
    max_prosecutor_risk: float | None = Field(default=None, gt=0, le=1)
    "Highest prosecutor re-identification risk allowed for any record."
    max_average_risk: float | None = Field(default=None, gt=0, le=1)
    "Highest average prosecutor risk allowed."
    min_addresses: int | None = Field(default=None, ge=1)
    "Fewest addresses a published snap node may serve."
    max_epsilon_per_release: float | None = Field(default=None, gt=0)
    "Largest epsilon one release may spend."
    max_epsilon_per_period: float | None = Field(default=None, gt=0)
    "Largest epsilon the ledger may show within the policy's budget period."
    min_k_published: int | None = Field(default=None, ge=2)
    "Smallest class over every published column an attacker could know (QIs, areas, times, the point)."
    max_sample_uniques_share: float | None = Field(default=None, ge=0, le=1)
    "Largest share of a records output's records that may be unique on everything published."
    min_signal_share: float | None = Field(default=None, ge=0, le=1)
    "Smallest share of a dp-table's cells whose published value exceeds its 95% error (the rest is noise)."
    min_audit_interval: float | None = Field(default=None, ge=0)
    "Smallest interval an LP attacker may narrow any suppressed cell to."
    scan_identifiers: bool = True
    "Scan every published column for identifier patterns (names, phones, emails, addresses)."
    identifier_scan_waivers: dict[str, tuple[Literal["email", "phone", "postal-code", "sin", "street-address",
                                                     "person-name"], ...]] = Field(default_factory=dict)
    "Checks of the identifier scan waived for a published column, by name (place names read as person names)."


def _step_union() -> Any:
    classes = tuple(registry.STEPS.values())
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


def _output_union() -> Any:
    classes = tuple(registry.OUTPUTS.values())
    if len(classes) == 1:
        return Annotated[classes[0], Field(discriminator="kind")]
    return Annotated[Union[classes], Field(discriminator="kind")]  # noqa: UP007


StepUnion = _step_union()
OutputUnion = _output_union()


def _budget_model() -> Any:
    from release.dp.config import BudgetPolicy

    return BudgetPolicy


def _series_model() -> Any:
    from release.series.config import SeriesPolicy

    return SeriesPolicy


class Policy(StrictModel):
    """One dataset's release policy, validated before anything runs."""

    version: Literal[1] = 1
    "Version of the policy language."
    dataset: Dataset
    jurisdiction: Jurisdiction
    input: InputSchema
    steps: list[StepUnion] = Field(default_factory=list)  # type: ignore[valid-type]
    "Ordered transformations applied to every record before outputs are built."
    outputs: list[OutputUnion] = Field(min_length=1)  # type: ignore[valid-type]
    "What is published: record-level files, DP tables, protected tables."
    gate: Gate = Field(default_factory=Gate)
    budget: _budget_model() | None = None  # type: ignore[valid-type]
    "Differential-privacy budget: privacy unit, caps and ledger (required by DP outputs)."
    series: _series_model() | None = None  # type: ignore[valid-type]
    "Re-releases: the registered source (keyed masks, predecessors) and what joint checks do (docs/series.md)."

    @model_validator(mode="after")
    def _names(self) -> Policy:
        names = [o.name for o in self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"output names must be unique; repeated: {dup}")
        return self

    @model_validator(mode="after")
    def _dp_shares(self) -> Policy:
        from release.dp.config import assign_shares

        assign_shares(self)  # split the release's DP budget across DP outputs by weight
        return self

    def output(self, name: str) -> Any:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)
