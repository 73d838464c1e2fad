"""`dp-table` output: differentially private counts (or sums) over public or DP-discovered keys."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr, model_validator

from release import registry
from release.batches import ROW_DIGEST
from release.context import AssessContext, OutputBuild, StepContext
from release.dp import keys as K
from release.dp.accuracy import describe_accuracy, expected_signal_share, part_scale, signal_figures
from release.dp.bounding import bound_contributions, bounding_key
from release.dp.config import dp_outputs
from release.dp.noise import noisy_threshold, noisy_vector, threshold_for
from release.dp.postprocess import PostProcessing, margin_of, post_process, suppress
from release.errors import PolicyError
from release.policy.base import OutputConfig, Schema
from release.registry import register_output


@register_output
class DPTableOutput(OutputConfig):
    """A table of noisy counts (or clipped sums) per key, with optional margins made consistent."""

    kind: Literal["dp-table"] = "dp-table"
    by: tuple[str, ...] = Field(min_length=1)
    "Grouping columns; every published key is a combination of their key sets."
    keys: dict[str, K.KeySpec]
    "Key set per `by` column: values, 'categories', {from, to} months, or 'discover' (DP threshold)."
    statistic: Literal["count", "sum", "mean"] = "count"
    "count: records per key. sum: clipped integer sum of `column`. mean: noisy clipped sum / noisy count."
    column: str | None = None
    "Numeric column summed or averaged (statistic: sum or mean)."
    bounds: tuple[int, int] | None = None
    "Clipping bounds of `column` for sums: one record moves a sum by at most max(|lo|, |hi|)."
    margins: tuple[tuple[str, ...], ...] = ()
    "Margins published with the table (e.g. [[division]]): noised too, then made consistent by least squares."
    weight: float = Field(default=1.0, gt=0)
    "Share of the release's budget this table gets, relative to the other DP outputs."
    suppress_below: int | None = Field(default=None, ge=1)
    "Blank cells whose noisy value is below this (looks only at noisy values, never true ones)."
    threshold: int | None = Field(default=None, ge=1)
    "Key-discovery threshold; computed from the delta share when absent."
    discovery_share: float = Field(default=0.2, gt=0, lt=1)
    "Fraction of this table's epsilon spent finding the keys of 'discover' columns (the rest noises the cells)."
    value_column: str = Field(default="count", pattern=r"^[a-z][a-z0-9_]*$")
    "Name of the published value column."
    post_processing: PostProcessing = "consistent"
    "none (unbiased, may be negative), nonnegative (clipped at 0), consistent (least squares with the margins)."
    expected_total: float | None = Field(default=None, ge=0)
    "Expected total of the table: `release plan` estimates the share of cells above their 95% error from it."

    spends_budget: ClassVar[bool] = True
    _share: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> DPTableOutput:
        if set(self.keys) != set(self.by):
            raise ValueError(f"keys must declare exactly the `by` columns {list(self.by)}")
        if self.statistic in ("sum", "mean") and (self.column is None or self.bounds is None):
            raise ValueError(f"statistic {self.statistic} needs `column` and `bounds`")
        if self.statistic == "mean" and self.margins:
            raise ValueError("margins are published for counts and sums, not means")
        if self.statistic == "mean" and self.post_processing != "consistent":
            raise ValueError("post_processing applies to counts and sums; a mean is always clipped to its bounds")
        if self.bounds is not None and self.bounds[0] > self.bounds[1]:
            raise ValueError("bounds: lower must not exceed upper")
        for m in self.margins:
            if not m or not set(m) < set(self.by):
                raise ValueError(f"margin {list(m)} must be a proper, non-empty subset of `by`")
        return self

    # -- policy-time figures -------------------------------------------------------------------
    def discovers_keys(self) -> bool:
        return any(v == "discover" for v in self.keys.values())

    def discover_columns(self) -> list[str]:
        return [c for c in self.by if self.keys[c] == "discover"]

    @property
    def share(self) -> dict[str, Any]:
        if self._share is None:
            raise PolicyError(f"output {self.name}: no DP budget assigned (the policy needs a `budget:` section)")
        return self._share

    def referenced_columns(self) -> list[str]:
        return list(self.by) + ([self.column] if self.column else [])

    def published_columns(self, schema: Schema) -> list[str]:
        return [*self.by, self.value_column]

    def frame_columns(self, policy: Any, schema: Schema) -> list[str] | None:
        """`build` reads the keys, the summed column and the privacy unit; contribution bounding's row
        scores read every column, which the score carried per row (ROW_DIGEST) stands for."""
        if policy.budget is None:
            return None
        return list(dict.fromkeys([*self.by, *([self.column] if self.column else []), policy.budget.privacy_unit,
                                   ROW_DIGEST]))

    def sensitivity(self) -> int:
        """L1 (and L2 bound) of one unit's contribution to one noised vector: the contribution bound."""
        m = int(self.share["max_records"])
        if self.statistic in ("sum", "mean"):
            assert self.bounds is not None
            return m * max(abs(self.bounds[0]), abs(self.bounds[1]), 1)
        return m

    def parts(self) -> int:
        """Noised vectors sharing the table's budget: cells and margins, or (means) sums and counts."""
        return 2 if self.statistic == "mean" else 1 + len(self.margins)

    def count_noise(self) -> tuple[float, dict[str, float]]:
        """Means: scale of the noise on the count vector (half the budget, sensitivity = the record bound)."""
        share = dict(self.share)
        if self.discovers_keys():
            share["epsilon"] = float(share["epsilon"]) * (1 - self.discovery_share)
        return part_scale(share, 2, int(self.share["max_records"]))

    def noise(self) -> tuple[float, dict[str, float]]:
        """Scale of the noise on cells and margins (after the key-discovery part of the budget)."""
        share = dict(self.share)
        if self.discovers_keys():
            share["epsilon"] = float(share["epsilon"]) * (1 - self.discovery_share)
        return part_scale(share, self.parts(), self.sensitivity())

    def discovery_epsilon(self) -> float:
        """Epsilon spent finding the keys of each 'discover' column."""
        return float(self.share["epsilon"]) * self.discovery_share / len(self.discover_columns())

    def discovery_scale(self) -> float:
        return part_scale({"mechanism": "laplace", "epsilon": self.discovery_epsilon()}, 1,
                          int(self.share["max_records"]))[0]

    def l0(self) -> int:
        g = self.share.get("max_groups")
        return int(g if g is not None else self.share["max_records"])

    def discovery_threshold(self) -> int:
        """Threshold a discovered key's noisy count must pass; set so each column spends at most its delta."""
        m = int(self.share["max_records"])
        delta = float(self.share["delta"]) / len(self.discover_columns())
        need = threshold_for(self.discovery_scale(), self.l0(), m, m, self.discovery_epsilon(), delta)
        if self.threshold is not None:
            if self.threshold < need:
                raise PolicyError(f"output {self.name}: threshold {self.threshold} is below {need}, the least"
                                  f" that keeps key discovery within delta {delta:g}")
            return self.threshold
        return need

    def budget(self) -> list[dict[str, Any]]:
        if self._share is None:
            return []
        s = self.share
        return [{"output": self.name, "mechanism": s["mechanism"],
                 **{k: s[k] for k in ("epsilon", "rho", "delta") if k in s}}]

    def dp_figures(self, schema: Schema) -> dict[str, Any]:
        """Mechanism, budget, scale, accuracy, key source: fixed by the policy, known before any record."""
        s = self.share
        scale, _ = self.noise()
        fig: dict[str, Any] = {"mechanism": "discrete " + s["mechanism"], "statistic": self.statistic,
                               **{k: s[k] for k in ("epsilon", "rho", "delta") if k in s},
                               "sensitivity": self.sensitivity(), "noised_parts": self.parts(),
                               "max_records_per_unit": s["max_records"], "max_groups_per_unit": s["max_groups"],
                               **describe_accuracy(s["mechanism"], scale),
                               "key_source": "thresholded" if self.discovers_keys() else "public",
                               "threshold": None, "margins": [list(m) for m in self.margins]}
        if self.statistic == "mean":
            cscale = self.count_noise()[0]
            fig.update(count_scale=cscale, count_accuracy_95=describe_accuracy(s["mechanism"], cscale)["accuracy_95"],
                       accuracy_meaning="95% bounds of the noisy sum (accuracy_95) and of the noisy count"
                       " (count_accuracy_95) per cell; the mean's error follows from both")
        fig["post_processing_choice"] = self.post_processing
        fig["intervals_truncated_at_zero"] = self.clips()
        fig["interval_95"] = ("[max(0, value − accuracy_95), value + accuracy_95]" if self.clips()
                              else "[value − accuracy_95, value + accuracy_95]")
        if self.discovers_keys():
            fig["threshold"] = self.discovery_threshold()
            # The delta actually spent, the mass at the threshold included (OpenDP 0.16 leaves it out).
            per_col = K.threshold_delta(self.discovery_scale(), fig["threshold"], self.l0(), int(s["max_records"]))
            fig["discovery"] = {"columns": self.discover_columns(), "epsilon_per_column": self.discovery_epsilon(),
                                "scale": self.discovery_scale(), "delta_per_column_exact": per_col,
                                "delta_exact": per_col * len(self.discover_columns())}
            fig["cells"] = None
        else:
            fig["cells"] = int(np.prod([len(k) for k in self.key_lists(schema)]))
            if self.expected_total is not None and self.statistic != "mean" and fig["cells"]:
                fig["expected_signal_share"] = round(expected_signal_share(
                    s["mechanism"], scale, self.expected_total / fig["cells"], float(fig["accuracy_95"])), 4)
        return fig

    def clips(self) -> bool:
        """Whether published values are clipped at zero (so intervals are truncated there)."""
        if self.statistic == "mean" or self.post_processing == "none":
            return False
        return self.statistic == "count" or bool(self.bounds and self.bounds[0] >= 0)

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        f = self.dp_figures(schema)
        for k in ("scale", "accuracy_95"):
            f[k] = round(float(f[k]), 6)
        return {k: f[k] for k in ("mechanism", "epsilon", "rho", "delta", "scale", "accuracy_95", "key_source",
                                  "threshold", "cells", "margins", "post_processing_choice", "expected_signal_share")
                if k in f}

    def key_lists(self, schema: Schema, found: dict[str, list[str]] | None = None) -> list[list[str]]:
        out = []
        for c in self.by:
            ks = K.public_keys(self.keys[c], c, schema)
            if ks is None:
                if found is None:
                    raise ValueError(f"keys of {c!r} are discovered, not public")
                ks = found[c]
            out.append(ks)
        return out

    def post_processing_steps(self) -> list[str]:
        if self.statistic == "mean":
            least = max(self.suppress_below or 1, 1)
            return ["mean = noisy clipped sum / noisy count, clipped to the bounds",
                    f"cells with noisy count below {least} blanked"]
        steps = []
        if self.post_processing == "none":
            steps.append("none: the noisy integers as drawn (unbiased; may be negative"
                         + ("; margins noised separately, not the sums of their cells" if self.margins else "") + ")")
        elif self.post_processing == "nonnegative":
            if self.clips():
                steps.append("non-negative (clipped at 0)")
            if self.margins:
                steps.append("margins noised separately, not the sums of their cells")
        else:
            if self.margins:
                steps.append("least-squares consistency of cells with margins " + ", ".join(
                    "[" + ", ".join(m) + "]" for m in self.margins))
            if self.clips():
                steps.append("non-negative (clipped at 0)")
            steps.append("integer rounding" + (" (largest remainder within each entry of the first margin)"
                                               if self.margins else ""))
        if self.suppress_below is not None:
            steps.append(f"cells with noisy value below {self.suppress_below} blanked")
        return steps

    def published_stems(self, schema: Schema) -> list[str]:
        if self.statistic == "mean":
            return [self.name]
        return [self.name, *(self.margin_stem(m) for m in self.margins)]

    def stem_columns(self, stem: str, schema: Schema) -> list[str]:
        for m in self.margins:
            if stem == self.margin_stem(m):
                return [*m, self.value_column]
        return self.published_columns(schema)

    def margin_stem(self, m: tuple[str, ...]) -> str:
        return f"{self.name}_by_{'_'.join(m)}"

    # -- the run -------------------------------------------------------------------------------
    def _bounded(self, frame: pd.DataFrame, ctx: StepContext,
                 eligible: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Mask of the rows kept by contribution bounding among the eligible rows (no copy of the frame)."""
        s = self.share
        unit = ctx.policy.budget.privacy_unit  # type: ignore[union-attr]
        if unit not in frame.columns:
            raise PolicyError(f"output {self.name}: privacy-unit column {unit!r} was removed by a step;"
                              " keep it (drop it after no step needs it) so contributions can be bounded")
        if unit == ctx.policy.input.record_id:
            # Record ids are validated unique: each unit has one row, within any bound.
            n = int(eligible.sum())
            return eligible, {"rows_in": n, "rows_kept": n, "units_over_bound": 0, "units_truncated": 0}
        # The run key: rows kept are a keyed function of each row, the same in every batch split.
        key = bounding_key(ctx.run_key or ctx.seed)
        # A pruned frame carries each row's score over every column (computed per batch): bounding uses it.
        digests = frame[ROW_DIGEST].to_numpy(dtype=np.uint64) if ROW_DIGEST in frame.columns else None
        keep, stats = bound_contributions(frame, unit, None, list(self.by), int(s["max_records"]),
                                          s["max_groups"], key, rows=eligible, digests=digests)
        return keep, stats

    def build(self, frame: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        # Codes of the public key columns first: rows outside a key set (or null) never count, so
        # they must not take a unit's bounded slots either.
        codes: dict[str, np.ndarray] = {}
        eligible = np.ones(len(frame), dtype=bool)
        for c in self.by:
            ks = K.public_keys(self.keys[c], c, ctx.schema)
            if ks is None:
                eligible &= frame[c].notna().to_numpy()
            else:
                codes[c] = K.column_codes(frame[c], ks)
                eligible &= codes[c] >= 0
        keep, stats = self._bounded(frame, ctx, eligible)
        figs = self.dp_figures(ctx.schema)
        scale = float(figs["scale"])
        mech = self.share["mechanism"]
        evidence = {"dp": {k: figs[k] for k in ("mechanism", "scale", "accuracy_95", "key_source", "threshold")},
                    "post_processing": self.post_processing_steps(),
                    "seed": ("contribution bounding keyed by the test run key; OpenDP's noise cannot be seeded"
                             if ctx.seed is not None else None)}
        internal: dict[str, Any] = {"bounding": stats}
        found = None
        if self.discovers_keys():
            found = self._discover(frame.loc[keep, self.discover_columns()], int(figs["threshold"]), internal)
            for c in self.discover_columns():
                codes[c] = K.column_codes(frame[c], found[c])
        tables = self._build_grid(frame, keep, codes, ctx, scale, mech, internal, found)
        return OutputBuild(tables=tables, evidence=evidence, internal=internal)

    def build_from_groups(self, groups: pd.DataFrame, stats: dict[str, int], ctx: StepContext) -> OutputBuild:
        """`build` from another runner's exact aggregate of the rows contribution bounding kept (release/spark).

        `groups`: one row per combination of the `by` values among the kept rows, with `_n` (rows)
        and, for sums and means, `_sum` (the clipped integer values summed). The noise, key
        discovery and post-processing are build's own, on the same exact counts.
        """
        codes = {c: K.column_codes(groups[c], ks) for c in self.by
                 if (ks := K.public_keys(self.keys[c], c, ctx.schema)) is not None}
        figs = self.dp_figures(ctx.schema)
        evidence = {"dp": {k: figs[k] for k in ("mechanism", "scale", "accuracy_95", "key_source", "threshold")},
                    "post_processing": self.post_processing_steps(),
                    "seed": ("contribution bounding keyed by the test run key; OpenDP's noise cannot be seeded"
                             if ctx.seed is not None else None)}
        internal: dict[str, Any] = {"bounding": dict(stats)}
        weights = groups["_n"].to_numpy(dtype=np.int64)
        found = None
        if self.discovers_keys():
            found = self._discover(groups[self.discover_columns()], int(figs["threshold"]), internal, weights)
            for c in self.discover_columns():
                codes[c] = K.column_codes(groups[c], found[c])
        sums = groups["_sum"].to_numpy(dtype=np.int64) if "_sum" in groups.columns else None
        tables = self._build_grid(groups, np.ones(len(groups), dtype=bool), codes, ctx, float(figs["scale"]),
                                  self.share["mechanism"], internal, found, weights=weights, sums=sums)
        return OutputBuild(tables=tables, evidence=evidence, internal=internal)

    def _values(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.statistic == "count":
            return None
        assert self.bounds is not None and self.column is not None
        v = pd.to_numeric(frame[self.column], errors="coerce").fillna(0).to_numpy(dtype=float)
        return np.clip(np.rint(v), self.bounds[0], self.bounds[1]).astype(np.int64)

    def _discover(self, frame: pd.DataFrame, threshold: int, internal: dict[str, Any],
                  weights: np.ndarray | None = None) -> dict[str, list[str]]:
        """Keys of each 'discover' column: values whose noisy count (OpenDP Laplace-threshold) passes the threshold.

        `weights`: rows each row of `frame` stands for (an aggregate's counts; None: one each).
        """
        found = {}
        for c in self.discover_columns():
            text = K.as_text(frame[c]).astype(object)
            if weights is None:
                counts = text.dropna().astype(str).value_counts()
            else:
                ok = text.notna().to_numpy()
                counts = pd.Series(weights[ok]).groupby(text[ok].astype(str).to_numpy()).sum()
            released = noisy_threshold({str(k): int(v) for k, v in counts.items()}, self.discovery_scale(), threshold)
            found[c] = sorted(released)
            internal.setdefault("discovery", {})[c] = {"values_in_data": int(len(counts)),
                                                       "values_released": len(found[c])}
        return found

    def _build_grid(self, frame: pd.DataFrame, keep: np.ndarray, codes: dict[str, np.ndarray], ctx: StepContext,
                    scale: float, mech: str, internal: dict[str, Any], found: dict[str, list[str]] | None = None,
                    weights: np.ndarray | None = None, sums: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
        key_lists = self.key_lists(ctx.schema, found)
        shape = tuple(len(k) for k in key_lists)
        n = int(np.prod(shape))
        flat = K.combine_codes([codes[c] for c in self.by], list(shape))
        inside = (flat >= 0) & keep
        # `weights`/`sums`: frame rows are an aggregate's groups (rows, clipped sums), not records.
        vals = self._values(frame) if weights is None else sums
        if self.statistic == "mean":
            return self._build_mean(flat[inside], vals[inside], key_lists, n, scale, mech, internal,  # type: ignore[index]
                                    None if weights is None else weights[inside])
        if vals is not None:
            cell_weights = vals[inside]
        else:
            cell_weights = None if weights is None else weights[inside]
        true = np.bincount(flat[inside], weights=cell_weights, minlength=n)
        true = np.rint(true).astype(np.int64)
        noisy_cells = noisy_vector(true, mech, scale)
        axes = {c: i for i, c in enumerate(self.by)}
        margin_axes = [tuple(sorted(axes[c] for c in m)) for m in self.margins]
        noisy_margins = [(ax, noisy_vector(margin_of(true, shape, ax), mech, scale)) for ax in margin_axes]
        cells, margins = post_process(noisy_cells, shape, noisy_margins, self.post_processing, self.clips())
        internal["true_total"] = int(true.sum())
        internal["mean_abs_error"] = float(np.abs(cells - true).mean()) if n else 0.0
        blank = suppress(cells, self.suppress_below)
        table = K.grid_frame(list(self.by), key_lists)
        table[self.value_column] = pd.array(np.where(blank, 0, cells), dtype="Int64")
        table.loc[blank, self.value_column] = pd.NA
        tables = {self.name: table}
        for m, ax, mv in zip(self.margins, margin_axes, margins, strict=True):
            mt = K.grid_frame(list(m), [key_lists[a] for a in ax])
            mt[self.value_column] = pd.array(mv, dtype="Int64")
            tables[self.margin_stem(m)] = mt
        return tables

    def _build_mean(self, cells: np.ndarray, vals: np.ndarray, key_lists: list[list[str]], n: int, scale: float,
                    mech: str, internal: dict[str, Any], rows: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
        assert self.bounds is not None
        true_sum = np.bincount(cells, weights=vals, minlength=n).astype(np.int64)
        true_count = np.bincount(cells, weights=rows, minlength=n).astype(np.int64)
        noisy_sum = noisy_vector(true_sum, mech, scale)
        noisy_count = noisy_vector(true_count, mech, self.count_noise()[0])
        blank = noisy_count < max(self.suppress_below or 1, 1)
        mean = np.clip(noisy_sum / np.maximum(noisy_count, 1), self.bounds[0], self.bounds[1])
        internal["true_total"] = int(true_count.sum())
        table = K.grid_frame(list(self.by), key_lists)
        table[self.value_column] = pd.array(np.round(mean, 3), dtype="Float64")
        table.loc[blank, self.value_column] = pd.NA
        return {self.name: table}

    # -- the assessment (published files only) -------------------------------------------------
    def assess(self, tables: dict[str, pd.DataFrame], ctx: AssessContext) -> dict[str, Any]:
        from release.plan import compile_plan

        schema = compile_plan(ctx.policy).final_schema
        figs = self.dp_figures(schema)
        t = tables[self.name]
        file = ctx.files.get(self.name)
        figs["post_processing"] = self.post_processing_steps()
        if ctx.run is not None and dp_outputs(ctx.policy)[0] is self:
            # During the run, the budget findings join the report (check re-derives them via BUNDLE_CHECKS).
            from release.dp.hooks import check_budget

            for f in check_budget(ctx.policy, None, ctx.run.manifest, {}):  # type: ignore[arg-type]
                f.output = self.name
                ctx.findings.append(f)
        figs["cells_published"] = int(len(t))
        vcol = self.value_column
        missing = [c for c in (*self.by, vcol) if c not in t.columns]
        if missing:
            ctx.finding("dp-columns", False, f"published table lacks column(s) {missing}", file=file)
            return {"dp": figs}
        v = pd.to_numeric(t[vcol], errors="coerce")
        blanks = int(v.isna().sum())
        figs["cells_suppressed"] = blanks
        if self.statistic != "mean":
            sig = signal_figures(v.dropna().to_numpy(dtype=float), float(figs["accuracy_95"]))
            figs.update(sig)
            gate = ctx.policy.gate.min_signal_share
            if gate is not None:
                ctx.finding("dp-signal", sig["signal_share"] >= gate - 1e-12,
                            f"{sig['signal_share']:.1%} of published cells exceed their 95% error"
                            f" ±{float(figs['accuracy_95']):.1f}; the gate's min_signal_share is {gate:.0%}",
                            file=file, figure=sig["signal_share"], threshold=gate)
        if self.statistic == "mean":
            assert self.bounds is not None
            out = int(((v.dropna() < self.bounds[0]) | (v.dropna() > self.bounds[1])).sum())
            ctx.finding("dp-bounds", out == 0, "published means lie within the clipping bounds" if not out
                        else f"{out} published mean(s) outside the clipping bounds {list(self.bounds)}", file=file)
        nonint = self.statistic != "mean" and bool(((v.dropna() % 1) != 0).any())
        negative = bool((v.dropna() < 0).any()) and "non-negative (clipped at 0)" in figs["post_processing"]
        ctx.finding("dp-integers", not nonint and not negative,
                    "published values are non-negative integers" if not (nonint or negative) else
                    "published values include " + ("non-integers" if nonint else "negative values"), file=file)
        if self.statistic == "mean":
            pass  # blanks are cells whose noisy count is below the threshold: not checkable from the means
        elif blanks and self.suppress_below is None:
            ctx.finding("dp-suppression", False, f"{blanks} blank cell(s) but the policy suppresses none", file=file)
        elif self.suppress_below is not None:
            low = int((v.dropna() < self.suppress_below).sum())
            ctx.finding("dp-suppression", low == 0, "no published cell below the suppression threshold" if not low
                        else f"{low} published cell(s) below suppress_below={self.suppress_below}", file=file)
        keys = t[list(self.by)].astype(str)
        dup = int(keys.duplicated().sum())
        # Discovered columns: their key set is whatever was published; the grid must still be complete.
        found = {c: sorted(keys[c].unique().tolist()) for c in self.discover_columns()}
        want = K.grid_frame(list(self.by), self.key_lists(schema, found)).astype(str)
        got = set(map(tuple, keys.to_numpy().tolist()))
        exp = set(map(tuple, want.to_numpy().tolist()))
        ok = got == exp and dup == 0
        ctx.finding("dp-keys", ok, f"all {len(exp)} keys of the key grid published once, no other key" if ok else
                    f"key set differs from the key grid: {len(exp - got)} missing, {len(got - exp)} not in a key set,"
                    f" {dup} repeated", file=file)
        if self.discovers_keys():
            figs["cells"] = len(exp)
            figs["discovered_keys"] = {c: len(v) for c, v in found.items()}
        for m in self.margins:
            if self.post_processing == "consistent":
                self._assess_margin(t, tables, m, ctx, figs)
            elif self.margin_stem(m) not in tables:
                ctx.finding("dp-margins", False, f"margin table {self.margin_stem(m)} not published",
                            file=ctx.files.get(self.margin_stem(m)))
        return {"dp": figs, "rows": int(len(t))}

    def _assess_margin(self, t: pd.DataFrame, tables: dict[str, pd.DataFrame], m: tuple[str, ...],
                       ctx: AssessContext, figs: dict[str, Any]) -> None:
        stem = self.margin_stem(m)
        file = ctx.files.get(stem)
        mt = tables.get(stem)
        if mt is None:
            ctx.finding("dp-margins", False, f"margin table {stem} not published", file=file)
            return
        vcol = self.value_column
        cells = t.assign(_v=pd.to_numeric(t[vcol], errors="coerce"))
        cells[list(m)] = cells[list(m)].astype(str)
        agg = cells.groupby(list(m), observed=True).agg(s=("_v", "sum"), blanks=("_v", lambda x: int(x.isna().sum())))
        mv = mt.assign(**{c: mt[c].astype(str) for c in m}).set_index(list(m))[vcol]
        mv = pd.to_numeric(mv, errors="coerce")
        joined = agg.join(mv.rename("margin"), how="outer")
        exact = joined["blanks"].fillna(0) == 0
        bad = int((exact & (joined["s"] != joined["margin"])).sum() + (~exact & (joined["s"] > joined["margin"])).sum()
                  + joined["margin"].isna().sum())
        ctx.finding("dp-margins", bad == 0, f"cells add up to the published margin [{', '.join(m)}]" if not bad else
                    f"{bad} entry(ies) of margin [{', '.join(m)}] disagree with the sum of their cells", file=file)


def signal_preflight(policy: Any, policy_path: Any, options: dict[str, Any]) -> None:
    """PRE_RUN hook: a dp-table whose expected total says it would be mostly noise is refused before any
    record is read or any budget is reserved (the gate's `min_signal_share` against the plan's estimate)."""
    need = policy.gate.min_signal_share
    if need is None:
        return
    from release.errors import BlockedError
    from release.plan import compile_plan

    schema = compile_plan(policy).final_schema
    for out in dp_outputs(policy):
        est = out.dp_figures(schema).get("expected_signal_share") if isinstance(out, DPTableOutput) else None
        if est is not None and est < need:
            raise BlockedError(f"output {out.name}: with expected_total {out.expected_total:g} over its cells, about"
                               f" {est:.0%} of cells would stand above their 95% error; the gate's min_signal_share"
                               f" is {need:.0%}; nothing was read or spent",
                               details=["coarsen the keys, drop margins, raise the budget share (weight), or lower"
                                        " min_signal_share"])


registry.add_hook(registry.PRE_RUN, signal_preflight)
