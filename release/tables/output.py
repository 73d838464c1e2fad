"""`table` output: tables with margins, primary and secondary suppression, and the LP audit."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from release.context import AssessContext, OutputBuild, StepContext
from release.errors import InputError, PolicyError
from release.policy.base import ColumnType, OutputConfig, Schema, StrictModel
from release.registry import register_output
from release.tables import audit as audit_mod
from release.tables.audit import Audit, attack
from release.tables.model import (
    TableModel,
    TableShape,
    build_model,
    cube_with_margins,
    global_values,
)
from release.tables.primary import contributions, dominance_rule, p_percent_rule, threshold_rule
from release.tables.secondary import Protection, protect_fast, protect_lp, protect_naive

FLAG = "flag"
SUPPRESSED = "suppressed"
CELL_ROWS = "_rows"
"Cell counts column: rows in the combination."
CELL_SUM = "_sum"
"Cell counts column: sum of the count or value column (missing values as 0)."
CELL_UNKNOWN = "_unknown"
"Cell counts column: rows whose count or value is missing (suppressed at source)."
CONTRIBUTOR = "_contributor"
"Cell counts column when every record is its own contributor (dominance, p% without `contributor`)."
_DIM_TYPES = (ColumnType.string, ColumnType.category)
# Builds of the current run, so the run-time assessment can add the internal-only checks
# (primary cells against their relative protection) that the public files cannot support.
_RUNS: dict[tuple[str, str], dict[str, Any]] = {}


class TableDef(StrictModel):
    """One table of the output: the dimensions it crosses (published with every margin)."""

    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    "File stem suffix; required when an output holds several tables."
    dimensions: tuple[str, ...] = Field(min_length=1, max_length=4)
    "Columns crossed; all two-way (and lower) margins are published, so all are protected."


class Dominance(StrictModel):
    """(n,k) dominance: a cell is sensitive when its n largest contributors hold over k%."""

    n: int = Field(ge=1, le=10)
    "Number of largest contributors that could collude (or be one firm)."
    k: float = Field(gt=0, le=100)
    "Share of the cell total (percent) those contributors may not exceed."


class PrimaryRules(StrictModel):
    """Which cells are risky in themselves (primary suppressions)."""

    threshold: int | None = Field(default=None, ge=1)
    "Counts below this (or cells with fewer contributors, for sums) identify too few people."
    protect_zeros: bool = False
    "Treat empty cells as risky too (a zero tells that nobody in the group was involved)."
    dominance: Dominance | None = None
    "Magnitude tables: one or two contributors dominating a total can estimate each other."
    p_percent: float | None = Field(default=None, gt=0, lt=100)
    "Magnitude tables: the second-largest contributor may not estimate the largest within p%."


class ProtectionInterval(StrictModel):
    """How wide the attacker's interval must stay for every suppressed cell."""

    absolute: float | None = Field(default=None, ge=0)
    "Smallest width of any suppressed cell's interval (default: the threshold)."
    relative: float = Field(default=0.0, ge=0, le=10)
    "Primary cells also need this fraction of their own value (checked at run time only)."


@register_output
class TableOutput(OutputConfig):
    """Publish tables with margins; small or dominated cells and their complements suppressed."""

    kind: Literal["table"] = "table"
    dimensions: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=4)
    "Shorthand for one table crossing these columns."
    tables: tuple[TableDef, ...] | None = Field(default=None, min_length=1)
    "Several tables protected together (shared margins are one cell, audited jointly)."
    count_column: str | None = None
    "Pre-aggregated input: the column holding each row's count (rows are otherwise counted)."
    value_column: str | None = None
    "Magnitude table: publish the sum of this column (dominance and p% need record input)."
    contributor: str | None = None
    "Column identifying a contributor for dominance and p% (default: each record)."
    na_means: Literal["refuse", "suppressed-at-source", "zero"] = "refuse"
    "A missing count: refuse the input; an unknown cell kept unpublished (with every margin it enters); or zero."
    total_label: str = "Total"
    "Dimension value of margin rows."
    primary: PrimaryRules
    "Rules that mark risky cells."
    protection: ProtectionInterval = Field(default_factory=ProtectionInterval)
    "What the LP attacker must not be able to narrow a suppressed cell to."
    secondary: Literal["lp", "naive"] = "lp"
    "lp: cheapest complementary cells by linear programming; naive: smallest cell per line (baseline)."
    lp_search: Literal["auto", "per-cell", "whole-table"] = "auto"
    "auto: audit first, then a perturbation only for cells still short, in sub-tables of the linked tables; per-cell: one per primary cell (the earlier method); whole-table: per cell over all cells."
    cost: Literal["cells", "value"] = "cells"
    "Minimise the number of suppressed cells, or the total value they hide."
    margin_weight: float = Field(default=2.0, ge=1)
    "Extra cost of suppressing a margin (totals are the figures users need most)."
    series: Literal["cumulative"] | None = None
    "cumulative: running totals over a growing period, audited with the series' earlier tables (docs/series.md)."

    @model_validator(mode="after")
    def _check(self) -> TableOutput:
        if (self.dimensions is None) == (self.tables is None):
            raise ValueError("give either dimensions (one table) or tables, not both")
        if self.count_column and self.value_column:
            raise ValueError("count_column and value_column exclude each other")
        p = self.primary
        if p.threshold is None and p.dominance is None and p.p_percent is None:
            raise ValueError("primary: give at least one of threshold, dominance, p_percent")
        if (p.dominance or p.p_percent) and not self.value_column:
            raise ValueError("dominance and p_percent apply to magnitude tables: set value_column")
        defs = self.table_defs()
        if len(defs) > 1 and any(t.name is None for t in defs):
            raise ValueError("name every table when an output holds several")
        names = [t.name for t in defs]
        if len(set(names)) != len(names):
            raise ValueError("table names must be unique")
        for t in defs:
            if len(set(t.dimensions)) != len(t.dimensions):
                raise ValueError(f"table {t.name or self.name}: a dimension is repeated")
            clash = {self.measure, FLAG, self.count_column, self.value_column} & set(t.dimensions)
            if clash:
                raise ValueError(f"column {sorted(c for c in clash if c)} cannot be a dimension")
        return self

    @property
    def measure(self) -> str:
        return "value" if self.value_column else "count"

    @property
    def integer(self) -> bool:
        return self.value_column is None

    def table_defs(self) -> tuple[TableDef, ...]:
        return self.tables if self.tables is not None else (TableDef(dimensions=self.dimensions or ()),)

    def published_stems(self, schema: Schema) -> list[str]:
        return [self.stem(t) for t in self.table_defs()]

    def stem_columns(self, stem: str, schema: Schema) -> list[str]:
        for t in self.table_defs():
            if stem == self.stem(t):
                return [*t.dimensions, self.measure, FLAG]
        return self.published_columns(schema)

    def stem(self, t: TableDef) -> str:
        return self.name if t.name is None else f"{self.name}_{t.name}"

    def required_interval(self, gate_min: float | None) -> float:
        base = self.protection.absolute
        if base is None:
            base = float(self.primary.threshold or 1)
        return max(base, gate_min or 0.0)

    def referenced_columns(self) -> list[str]:
        cols = [d for t in self.table_defs() for d in t.dimensions]
        cols += [c for c in (self.count_column, self.value_column, self.contributor) if c]
        return list(dict.fromkeys(cols))

    def published_columns(self, schema: Schema) -> list[str]:
        dims = list(dict.fromkeys(d for t in self.table_defs() for d in t.dimensions))
        return [*dims, self.measure, FLAG]

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        for d in dict.fromkeys(x for t in self.table_defs() for x in t.dimensions):
            if d in schema and schema[d].type not in _DIM_TYPES:
                raise PolicyError(f"output {self.name}: dimension {d!r} is {schema[d].type.value}; tables cross"
                                  " string or category columns (generalize numbers and dates to bins first)")
        return {"tables": [{"file": self.stem(t), "dimensions": list(t.dimensions)} for t in self.table_defs()],
                "primary": self.primary.model_dump(mode="json", exclude_none=True),
                "required_interval": self.required_interval(None), "secondary": self.secondary}

    # ------------------------------------------------------------------ build

    def _check_dimensions(self, frame: pd.DataFrame) -> None:
        """Located errors on the rows: a missing dimension value (row numbers, never values)."""
        for d in dict.fromkeys(x for t in self.table_defs() for x in t.dimensions):
            col = frame[d]
            if col.isna().any():
                rows = (np.flatnonzero(col.isna().to_numpy()) + 1)[:20].tolist()
                raise InputError(f"output {self.name}: dimension column {d!r} has {int(col.isna().sum())} missing"
                                 f" value(s) (rows {rows}); filter or generalize them before tabulating")

    def _levels(self, counts: pd.DataFrame, schema: Schema) -> dict[str, tuple[str, ...]]:
        """Each dimension's levels: its declared categories first, then the other values seen, sorted."""
        out: dict[str, tuple[str, ...]] = {}
        for d in dict.fromkeys(x for t in self.table_defs() for x in t.dimensions):
            col = counts[d]
            if col.isna().any():
                # Only from another runner's aggregate: cell_counts checked the rows themselves.
                raise InputError(f"output {self.name}: dimension column {d!r} has"
                                 f" {int(counts.loc[col.isna().to_numpy(), CELL_ROWS].sum())} missing value(s);"
                                 " filter or generalize them before tabulating")
            seen = pd.unique(col.astype("string"))
            spec = schema.get(d)
            if spec is not None and spec.categories:
                levels = list(spec.categories) + sorted(set(seen) - set(spec.categories))
            else:
                levels = sorted(str(x) for x in seen)
            if self.total_label in levels:
                raise InputError(f"output {self.name}: column {d!r} has a value equal to total_label"
                                 f" {self.total_label!r}; choose another total_label")
            out[d] = tuple(levels)
        return out

    def _weights(self, frame: pd.DataFrame) -> np.ndarray:
        col = self.count_column or self.value_column
        if col is None:
            return np.ones(len(frame))
        w = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        na = np.isnan(w)
        if na.any():
            if self.na_means == "refuse":
                rows = (np.flatnonzero(na) + 1)[:20].tolist()
                raise InputError(f"output {self.name}: column {col!r} has {int(na.sum())} missing value(s)"
                                 f" (rows {rows}); declare na_means: suppressed-at-source or zero in the policy")
            if self.na_means == "zero":
                w = np.where(na, 0.0, w)
        if (w[~np.isnan(w)] < 0).any():
            raise InputError(f"output {self.name}: column {col!r} has negative values; tables of counts and"
                             " non-negative magnitudes only")
        return w

    def _shared_margins(self, policy: Any) -> None:
        """Tables of one measure sharing a dimension must be protected together (one output)."""
        mine = {d for t in self.table_defs() for d in t.dimensions}
        for o in policy.outputs:
            if o is self or getattr(o, "kind", None) != "table" or o.name == self.name:
                continue
            same = (o.count_column, o.value_column) == (self.count_column, self.value_column)
            shared = mine & {d for t in o.table_defs() for d in t.dimensions}
            if same and shared:
                raise PolicyError(f"outputs {self.name} and {o.name} both tabulate {sorted(shared)}: their shared"
                                  " margins would be protected separately and could be recomputed across them;"
                                  " declare both under one table output's `tables:` to protect them together")

    # ------------------------------------------------------------------ cell counts: the aggregate a runner computes

    def weight_column(self) -> str | None:
        """The column whose values are added up per cell (None: rows are counted)."""
        return self.count_column or self.value_column

    def group_columns(self) -> list[str]:
        """What the cell counts are grouped by: every dimension, then the contributor when the primary
        rules need each contributor's share of a cell (magnitude tables: dominance, p%, threshold)."""
        dims = list(dict.fromkeys(d for t in self.table_defs() for d in t.dimensions))
        if self.value_column is not None and self.contributor and self.contributor not in dims:
            dims.append(self.contributor)
        return dims

    def aggregable(self, schema: Schema) -> bool:
        """Whether a runner may compute the cell counts as a group-by (release/spark) and get exactly what
        cell_counts gives: not when every record is its own contributor (the aggregate is the records),
        nor when the summed column is not integer (a float sum depends on the order of its terms)."""
        if self.value_column is not None and not self.contributor:
            return False
        col = self.weight_column()
        return col is None or (col in schema and schema[col].type == ColumnType.integer)

    def accumulator(self, schema: Schema) -> TableCounts | None:
        """The cell counts batch by batch (TableCounts), where a group-by gives exactly cell_counts."""
        return TableCounts(self) if self.aggregable(schema) else None

    def build_accumulated(self, acc: TableCounts, state: dict[str, Any], ctx: StepContext) -> OutputBuild:
        self.check_policy(ctx)  # the policy's faults before the rows' (finish raises those), as in build()
        return self.build_from_counts(acc.finish(state), ctx)

    def cell_counts(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The output's aggregate of its rows, all build_from_counts needs: per combination of
        group_columns(), the rows (CELL_ROWS), the sum of the count or value column with missing values
        as 0 (CELL_SUM), and the rows whose count or value is missing (CELL_UNKNOWN). The rows' own
        faults (missing dimension values, missing or negative counts) are raised here, located."""
        self._check_dimensions(frame)
        w = self._weights(frame)
        by = self.group_columns()
        if self.value_column is not None and not self.contributor:
            # Every record is its own contributor: its row is its own group.
            out = frame[by].reset_index(drop=True)
            out[CONTRIBUTOR] = np.arange(len(frame), dtype=np.int64)
            out[CELL_ROWS] = np.ones(len(frame), dtype=np.int64)
            out[CELL_SUM] = np.nan_to_num(w, nan=0.0)
            out[CELL_UNKNOWN] = np.isnan(w).astype(np.int64)
            return out
        codes, uniques = [], []
        for c in by:
            code, uniq = pd.factorize(frame[c], use_na_sentinel=False)
            codes.append(np.asarray(code, dtype=np.int64))
            uniques.append(np.asarray(uniq, dtype=object))
        shape = tuple(max(len(u), 1) for u in uniques)
        flat = np.ravel_multi_index(tuple(codes), shape) if len(frame) else np.zeros(0, dtype=np.int64)
        ids, cells = pd.factorize(flat, sort=True)
        n = len(cells)
        at = np.unravel_index(np.asarray(cells, dtype=np.int64), shape)
        cols = {c: pd.Series(u[at[i]] if n else u[:0], dtype=frame[c].dtype) for i, (c, u) in
                enumerate(zip(by, uniques, strict=True))}
        return pd.DataFrame({**cols,
                             CELL_ROWS: np.bincount(ids, minlength=n).astype(np.int64),
                             # bincount adds a cell's values in row order, as the cube did from the rows.
                             CELL_SUM: np.bincount(ids, weights=np.nan_to_num(w, nan=0.0), minlength=n),
                             CELL_UNKNOWN: np.bincount(ids, weights=np.isnan(w), minlength=n).astype(np.int64)})

    def check_policy(self, ctx: StepContext) -> None:
        """The output's faults of the policy (dimension types, margins shared with another output)."""
        self.plan_info(ctx.schema)
        self._shared_margins(ctx.policy)

    def build(self, frame: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        """From the rows: their cell counts (cell_counts), then build_from_counts."""
        self.check_policy(ctx)
        return self.build_from_counts(self.cell_counts(frame), ctx)

    def build_from_counts(self, counts: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        """The published tables from the cell counts alone (cell_counts' columns, computed by any runner:
        the local one from its rows, release/spark as one group-by): margins, primary and secondary
        suppression, the LP audit. The order of the counts' rows does not matter."""
        self.check_policy(ctx)
        counts = counts.reset_index(drop=True)
        levels = self._levels(counts, ctx.schema)
        w = counts[CELL_SUM].to_numpy(dtype=float)
        unknown_rows = counts[CELL_UNKNOWN].to_numpy(dtype=float)
        defs = self.table_defs()
        shapes = [TableShape(self.stem(t), t.dimensions, tuple(levels[d] for d in t.dimensions)) for t in defs]
        model = build_model(shapes)
        cubes, codes_per = [], []
        for t, s in zip(defs, shapes, strict=True):
            codes = np.column_stack([pd.Categorical(counts[d].astype("string"), categories=list(levels[d])).codes
                                     for d in t.dimensions]).astype(np.int64)
            inner_shape = tuple(len(lv) for lv in s.levels)
            flat = np.ravel_multi_index(tuple(codes.T), inner_shape) if len(counts) else np.zeros(0, dtype=np.int64)
            size = int(np.prod(inner_shape))
            sums = np.bincount(flat, weights=w, minlength=size)
            unknown = np.bincount(flat, weights=unknown_rows, minlength=size) > 0
            inner = np.where(unknown, np.nan, sums).reshape(inner_shape)
            cubes.append(cube_with_margins(inner))
            codes_per.append(codes)
        values = global_values(model, cubes)
        primary = self._primary(model, values, cubes, codes_per, counts, w, shapes)
        absolute = self.required_interval(ctx.policy.gate.min_audit_interval)
        whole = max(max(t.shape) for t in model.tables)
        if self.secondary == "lp" and self.lp_search == "auto":
            prot = protect_fast(model, values, primary, absolute=absolute, relative=self.protection.relative,
                                integer=self.integer, cost=self.cost, margin_weight=self.margin_weight)
        elif self.secondary == "lp":
            prot = protect_lp(model, values, primary, absolute=absolute, relative=self.protection.relative,
                              integer=self.integer, cost=self.cost, margin_weight=self.margin_weight,
                              local=whole if self.lp_search == "whole-table" else None)
        else:
            prot = protect_naive(model, values, primary, absolute=absolute, relative=self.protection.relative,
                                 integer=self.integer)
        if self.series == "cumulative":
            from release.series.cumulative import protect_for_run

            # The earlier tables of the series are published: more of this table may need suppressing.
            prot = protect_for_run(self, model, values, prot, ctx)
        tables = {s.name: self._publish(model, s, g, values, prot.suppressed)
                  for s, g in zip(shapes, model.local, strict=True)}
        _RUNS[(ctx.release_id, self.name)] = {"model": model, "values": values, "protection": prot}
        sup = prot.suppressed & ~prot.unknown
        evidence = {"cells": model.n, "primary": int(prot.primary.sum()), "secondary": int(prot.secondary.sum()),
                    "suppressed_at_source": int(prot.unknown.sum()), "suppressed_cells": int(prot.suppressed.sum()),
                    "method": prot.method, "seconds": round(prot.seconds, 3), "lp_solves": prot.lp_solves,
                    "audit_components": prot.audit.components, "largest_component": prot.audit.largest_component,
                    # Cubes the fast path used instead of a perturbation LP (3-D and larger tables).
                    "hypercubes": prot.hypercubes,
                    # The final audit: LPs solved, and bounds proved by a witness meeting a
                    # propagated bound instead (no LP of their own).
                    "audit_lp_solves": prot.audit.solves, "audit_proved_by_witness": prot.audit.certified,
                    # A secondary cell that is a shared margin counts in each table holding it.
                    "secondary_by_table": {s.name: int(prot.secondary[np.unique(g)].sum())
                                           for s, g in zip(shapes, model.local, strict=True)}}
        internal = {"suppressed_total": float(np.sum(values[sup])),
                    # Share of each table's true grand total hidden in its suppressed interior cells.
                    "suppressed_total_share": {s.name: _hidden_share(model, s_i, values, sup)
                                               for s_i, s in enumerate(shapes)},
                    "primary_cells": [dict(model.keys[j]) for j in np.flatnonzero(prot.primary)],
                    "secondary_cells": [dict(model.keys[j]) for j in np.flatnonzero(prot.secondary)],
                    "failing_cells": [dict(model.keys[j]) for j in prot.failing]}
        return OutputBuild(tables=tables, evidence=evidence, internal=internal)

    def _primary(self, model: TableModel, values: np.ndarray, cubes: list[np.ndarray], codes_per: list[np.ndarray],
                 frame: pd.DataFrame, w: np.ndarray, shapes: list[TableShape]) -> np.ndarray:
        p = self.primary
        if self.value_column is None:
            return threshold_rule(values, p.threshold or 0, p.protect_zeros) if p.threshold else np.zeros(model.n, bool)
        prim = np.zeros(model.n, dtype=bool)
        n_top = max(2, p.dominance.n if p.dominance else 1)
        who = frame[self.contributor].to_numpy() if self.contributor else np.arange(len(frame))
        for g, codes, s in zip(model.local, codes_per, shapes, strict=True):
            c = contributions(codes, s.shape, who, np.nan_to_num(w, nan=0.0), n_top)
            risky = np.zeros(s.shape, dtype=bool)
            if p.threshold:
                risky |= (c.n_contributors > 0) & (c.n_contributors < p.threshold)
                if p.protect_zeros:
                    risky |= c.n_contributors == 0
            if p.dominance:
                risky |= dominance_rule(c, p.dominance.n, p.dominance.k)
            if p.p_percent:
                risky |= p_percent_rule(c, p.p_percent)
            np.logical_or.at(prim, g, risky.ravel())
        return prim & ~np.isnan(values)

    def _publish(self, model: TableModel, s: TableShape, g: np.ndarray, values: np.ndarray,
                 suppressed: np.ndarray) -> pd.DataFrame:
        keys = s.cell_keys(self.total_label)
        cols: dict[str, Any] = {d: pd.array([k[i] for k in keys], dtype="string") for i, d in enumerate(s.dims)}
        v = np.where(suppressed[g], np.nan, values[g])
        if self.integer:
            cols[self.measure] = pd.array(np.where(np.isnan(v), 0, v).astype(np.int64), dtype="Int64")
            cols[self.measure][np.isnan(v)] = pd.NA
        else:
            cols[self.measure] = v
        cols[FLAG] = pd.array(np.where(suppressed[g], SUPPRESSED, ""), dtype="string")
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ assess

    def assess(self, tables: dict[str, pd.DataFrame], ctx: AssessContext) -> dict[str, Any]:
        defs = self.table_defs()
        shapes, cubes, flags = [], [], []
        for t in defs:
            stem = self.stem(t)
            f = ctx.files.get(stem, f"{stem}.csv")
            frame = tables.get(stem)
            if frame is None:
                ctx.finding("table-structure", False, f"table {stem} is not published", file=f)
                return {}
            parsed = _parse_published(frame, t.dimensions, self.measure, self.total_label)
            if isinstance(parsed, str):
                ctx.finding("table-structure", False, f"{stem}: {parsed}", file=f)
                return {}
            s, cube, flag = parsed
            shapes.append(TableShape(stem, t.dimensions, s))
            cubes.append(cube)
            flags.append(flag)
        model = build_model(shapes)
        try:
            pub = global_values(model, cubes)
        except ValueError:
            ctx.finding("table-additivity", False, "tables of this output disagree on a shared margin")
            return {}
        flag_ok = all(np.array_equal(np.isnan(c).ravel(), fl) for c, fl in zip(cubes, flags, strict=True))
        ctx.finding("table-flags", flag_ok, "every empty cell carries the suppression marker and no published cell does"
                    if flag_ok else "suppression marker and empty cells disagree")
        required = self.required_interval(ctx.policy.gate.min_audit_interval)
        if self.integer and self.primary.threshold:
            known = pub[~np.isnan(pub)]
            small = int(np.sum(threshold_rule(known, self.primary.threshold, self.primary.protect_zeros)))
            if self.integer:
                small += int(np.sum(np.abs(known - np.round(known)) > 1e-9) + np.sum(known < 0))
            ctx.finding("table-threshold", small == 0,
                        f"no published cell below the threshold {self.primary.threshold}" if not small else
                        f"{small} published cell(s) below the threshold {self.primary.threshold} (or not a count)",
                        figure=small, threshold=self.primary.threshold)
        run = _RUNS.pop((ctx.run.release_id, self.name), None) if ctx.run is not None else None
        # Every suppressed cell must keep the required width: large components prove that width,
        # smaller ones get exact intervals (the same audit at run time and in `release check`,
        # whose figures must match). `release check --exact-audit` also computes every exact
        # interval, judges by those and checks each proved interval lies inside its exact one.
        need = np.where(np.isnan(pub), float(required), np.nan)
        audit = _reuse_audit(run, model, pub, need) or attack(model, pub, integer=self.integer, need=need)
        judge = audit
        if ctx.options.get("exact_audit") and not audit.exact:
            judge = attack(model, pub, integer=self.integer)
        ctx.finding("table-additivity", audit.consistent,
                    "published cells add up to their margins" if audit.consistent else
                    "published values break the additivity of the table (edited file?)")
        sw = judge.smallest_width()
        inside = judge is audit or bool(np.all((audit.lower >= judge.lower - 1e-6)
                                               & (audit.upper <= judge.upper + 1e-6)))
        ok = (sw is None or sw >= required - 1e-6) and inside
        shown = "unbounded" if sw is not None and np.isinf(sw) else _num(sw)
        kind = "smallest interval width" if judge.exact else "smallest proved interval width"
        ctx.finding("table-audit", ok,
                    ("no suppressed cell; nothing to audit" if sw is None else
                     f"LP attacker's {kind} {shown} >= required {_num(required)}") if ok else
                    ("a proved interval lies outside the exact one" if not inside else
                     f"LP attacker narrows a suppressed cell to width {shown} < required {_num(required)}"),
                    figure=shown, threshold=required)
        # The figures are the audit's (report.json and `release check` must agree on them).
        sw = audit.smallest_width()
        shown = "unbounded" if sw is not None and np.isinf(sw) else _num(sw)
        sup = np.flatnonzero(audit.suppressed)
        inexact = audit.inexact if audit.inexact is not None else np.zeros(len(pub), dtype=bool)
        dims_all = tuple(dict.fromkeys(d for t in defs for d in t.dimensions))
        figures: dict[str, Any] = {
            "cells": model.n,
            "suppressed_cells": int(len(sup)),
            # "unbounded" when every suppressed cell is unbounded above; None when nothing is suppressed.
            "smallest_interval": shown,
            "required_interval": required,
            # Intervals that are the attacker's exact ones, and those proved only (a component too
            # large for every exact interval: two consistent tables that far apart; the attacker's
            # interval contains it, so "smallest_interval" is then a proved lower bound).
            "exact_intervals": int(len(sup) - inexact[sup].sum()),
            "proved_intervals": int(inexact[sup].sum()),
            "audit": [{"cell": {d: dict(model.keys[j]).get(d, self.total_label) for d in dims_all
                                if any(d in s.dims for s in shapes)},
                       "lower": _num(audit.lower[j]), "upper": _num(audit.upper[j]),
                       # Only when some are proved: then every entry says which it is.
                       **({"exact": not inexact[j]} if inexact[sup].any() else {})} for j in sup],
        }
        figures["tables"] = [_table_figures(model, g, s.name, audit) for g, s in zip(model.local, shapes, strict=True)]
        if run is not None:
            prot: Protection = run["protection"]
            figures["primary"] = int(prot.primary.sum())
            figures["secondary"] = int(prot.secondary.sum())
            figures["suppressed_at_source"] = int(prot.unknown.sum())
            # Compare with true values: internal only, the message says how many, never which value.
            model_run: TableModel = run["model"]
            if model_run.keys == model.keys:
                req = prot.required
                # Two proved lower bounds of each exact width (or the exact width): the larger holds.
                pw = audit.width[prot.primary]
                if prot.audit.suppressed.shape == audit.suppressed.shape:
                    pw = np.maximum(pw, prot.audit.width[prot.primary])
                short = int(np.sum(pw < req[prot.primary] - 1e-6))
                ctx.finding("table-primary-protection", short == 0,
                            f"all {int(prot.primary.sum())} primary cell(s) keep their protection interval" if not short
                            else f"{short} primary cell(s) can be narrowed below their protection interval")
        return {"rows": int(sum(len(tables[self.stem(t)]) for t in defs)), "suppression": figures}


def _reuse_audit(run: dict[str, Any] | None, model: TableModel, pub: np.ndarray, need: np.ndarray) -> Audit | None:
    """At run time the protection's last audit was computed from exactly these published values
    (same cells, same values): reuse it rather than solve the same LPs again, when it answered
    the same question (`attack` with this `need`; every interval exact, or the same widths asked
    on the same components), so it is what `release check` recomputes from the files."""
    if run is None:
        return None
    prot: Protection = run["protection"]
    a = prot.audit
    same = run["model"].keys == model.keys and a.suppressed.shape == pub.shape and np.array_equal(
        np.where(prot.suppressed, np.nan, np.nan_to_num(run["values"], nan=0.0)), pub, equal_nan=True)
    if not same:
        return None
    n = len(pub)
    comp = a.component if a.component is not None else np.zeros(n, dtype=np.int64)
    asked = a.asked if a.asked is not None else np.full(n, np.nan)
    inexact = a.inexact if a.inexact is not None else np.zeros(n, dtype=bool)
    large = a.suppressed & (comp >= audit_mod.WIDTH_PROOF_CELLS)
    # Exact intervals below the threshold (the same however computed); above it, the same widths asked.
    same_question = (a.proof_from == audit_mod.WIDTH_PROOF_CELLS or not large.any()) and np.array_equal(
        asked[large], need[large], equal_nan=True) and not inexact[~large].any()
    return a if same_question else None


def _table_figures(model: TableModel, g: np.ndarray, name: str, audit: Audit) -> dict[str, Any]:
    """Per published table: its cells, how many are suppressed, the smallest audited width and
    how many suppressed intervals are exact or proved only (a lower bound of the exact width)."""
    cells = np.unique(g)
    s = audit.suppressed[cells]
    w = audit.width[cells][s]
    sw = float(w.min()) if len(w) else None
    proved = int(audit.inexact[cells][s].sum()) if audit.inexact is not None else 0
    return {"table": name, "cells": int(len(cells)), "suppressed_cells": int(s.sum()),
            "smallest_interval": "unbounded" if sw is not None and np.isinf(sw) else _num(sw),
            "exact_intervals": int(s.sum()) - proved, "proved_intervals": proved}


def _hidden_share(model: TableModel, i: int, values: np.ndarray, sup: np.ndarray) -> float | None:
    """Share of one table's true total held by its suppressed interior cells (internal only)."""
    t = model.tables[i]
    inner = model.local[i].reshape(t.shape)[tuple(slice(0, -1) for _ in t.shape)].ravel()
    total = float(np.nansum(values[inner]))
    return round(float(np.nansum(values[inner][sup[inner]])) / total, 6) if total > 0 else None


def _num(x: float | None) -> float | int | None:
    """JSON-friendly number; None for an unbounded interval end or no value."""
    if x is None or np.isinf(x):
        return None
    xf = float(x)
    return int(xf) if xf.is_integer() else round(xf, 6)


def _parse_published(frame: pd.DataFrame, dims: tuple[str, ...], measure: str,
                     total: str) -> tuple[tuple[tuple[str, ...], ...], np.ndarray, np.ndarray] | str:
    """Structure (levels), values cube and marker flags from a published long table, or the fault."""
    missing = [c for c in (*dims, measure, FLAG) if c not in frame.columns]
    if missing:
        return f"missing column(s) {missing}"
    labels = [frame[d].astype("string") for d in dims]
    if any(lab.isna().any() for lab in labels):
        return "a dimension value is empty"
    levels = tuple(tuple(x for x in pd.unique(lab) if x != total) for lab in labels)
    shape = tuple(len(lv) + 1 for lv in levels)
    if len(frame) != int(np.prod(shape)):
        return f"{len(frame)} rows but a complete table with margins has {int(np.prod(shape))}"
    idx = []
    for lab, lv in zip(labels, levels, strict=True):
        code = pd.Categorical(lab, categories=[*lv, total]).codes
        idx.append(code)
    flat = np.ravel_multi_index(tuple(idx), shape)
    if len(np.unique(flat)) != len(flat):
        return "a cell appears twice"
    cube = np.full(int(np.prod(shape)), np.nan)
    vals = pd.to_numeric(frame[measure], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    cube[flat] = vals
    fl = np.zeros(len(cube), dtype=bool)
    fl[flat] = frame[FLAG].astype("string").fillna("").to_numpy() == SUPPRESSED
    return levels, cube.reshape(shape), fl



class TableCounts:
    """A `table` output's cell counts over the row pipeline's batches, in order (the local runner's
    accumulator: create / add / finish; batches are numbered in the order they are added, as the frame
    they would form).

    finish() gives exactly cell_counts() of the concatenated batches, or raises the error cell_counts
    would raise on that frame (the same rows named), so a policy of `table` outputs needs no frame.
    Only for outputs whose counts add up exactly (TableOutput.aggregable).
    """

    def __init__(self, output: TableOutput) -> None:
        self.output = output
        self.dims = list(dict.fromkeys(d for t in output.table_defs() for d in t.dimensions))
        self.columns = list(dict.fromkeys([*output.group_columns(), *output.referenced_columns()]))

    def create(self) -> dict[str, Any]:
        return {"rows": 0, "parts": [], "missing": {d: [0, []] for d in self.dims}, "na": [0, []], "negative": False}

    def add(self, state: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
        o = self.output
        off = state["rows"]
        state["rows"] += len(frame)
        fault = False
        for d in self.dims:
            na = frame[d].isna().to_numpy()
            if na.any():
                m = state["missing"][d]
                m[0] += int(na.sum())
                m[1] = (m[1] + (np.flatnonzero(na) + off + 1)[:20].tolist())[:20]
                fault = True
        col = o.weight_column()
        if col is not None:
            w = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            na = np.isnan(w)
            if na.any() and o.na_means == "refuse":
                state["na"][0] += int(na.sum())
                state["na"][1] = (state["na"][1] + (np.flatnonzero(na) + off + 1)[:20].tolist())[:20]
                fault = True
            if (w[~na] < 0).any():
                state["negative"] = True
                fault = True
        if not fault and not self._faulty(state):
            state["parts"].append(o.cell_counts(frame))
            if len(state["parts"]) >= 64:
                state["parts"] = [self._merge(state["parts"])]
        return state

    def _faulty(self, state: dict[str, Any]) -> bool:
        return any(m[0] for m in state["missing"].values()) or bool(state["na"][0]) or state["negative"]

    def _merge(self, parts: list[pd.DataFrame]) -> pd.DataFrame:
        by = self.output.group_columns()
        both = pd.concat(parts, ignore_index=True)
        g = both.groupby(by, dropna=False, sort=False, observed=True)
        # Integer counts and sums (aggregable outputs only): added in any order, the same numbers.
        return g.agg({CELL_ROWS: "sum", CELL_SUM: "sum", CELL_UNKNOWN: "sum"}).reset_index()

    def finish(self, state: dict[str, Any]) -> pd.DataFrame:
        o = self.output
        for d in self.dims:
            n, rows = state["missing"][d]
            if n:
                raise InputError(f"output {o.name}: dimension column {d!r} has {n} missing"
                                 f" value(s) (rows {rows}); filter or generalize them before tabulating")
        col = o.weight_column()
        if state["na"][0]:
            raise InputError(f"output {o.name}: column {col!r} has {state['na'][0]} missing value(s)"
                             f" (rows {state['na'][1]}); declare na_means: suppressed-at-source or zero in the policy")
        if state["negative"]:
            raise InputError(f"output {o.name}: column {col!r} has negative values; tables of counts and"
                             " non-negative magnitudes only")
        return self._merge(state["parts"]) if state["parts"] else o.cell_counts(pd.DataFrame(
            {c: pd.Series([], dtype="string") for c in self.columns}))
