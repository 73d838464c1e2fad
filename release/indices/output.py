"""`indices` output: multiple benchmarking (disproportionality, disparity) from the tables the release publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from release import registry
from release.context import AssessContext, OutputBuild, StepContext
from release.errors import InputError, PolicyError
from release.indices.compute import (
    HashStream,
    Index,
    Quantity,
    disparity,
    disproportionality,
    exact,
    seed_of,
)
from release.indices.sources import (
    Source,
    dp_source,
    file_source,
    groups_of,
    read_csv_bytes,
    select,
    table_source,
)
from release.policy.base import OutputConfig, Schema, StrictModel
from release.registry import register_output

COLUMNS = ["group", "benchmark", "measure", "index", "lower", "upper", "method", "flag"]
BENCH_COLUMNS = ["group", "benchmark", "value"]


class Selection(StrictModel):
    """Rows of a table published by another output of this policy."""

    output: str
    "Name of a `dp-table` (counts) or `table` (counts) output of this policy, listed before this one."
    table: str | None = None
    "File stem of the table to read when the output publishes several (default: the output's first)."
    where: dict[str, str] = Field(default_factory=dict)
    "Published values of other dimensions selecting the rows (e.g. use_of_force: 'Yes'); others are summed."


class Benchmark(StrictModel):
    """A population the events are compared with: a public file, or a table of this release."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    "Published in the `benchmark` column."
    description: str | None = None
    "What the benchmark counts (shown in the report)."
    file: str | None = None
    "Public CSV (relative to the policy) with one row per group; the approval covers it by sha256."
    value_column: str = "count"
    "Column of the file holding each group's size."
    source: Selection | None = None
    "A table of this release instead of a file (e.g. all enforcement actions)."

    @model_validator(mode="after")
    def _one(self) -> Benchmark:
        if (self.file is None) == (self.source is None):
            raise ValueError("give either file or source, not both")
        return self


@register_output
class IndicesOutput(OutputConfig):
    """Disproportionality and disparity indices, with 95% intervals that account for the protection."""

    kind: Literal["indices"] = "indices"
    group: str
    "Column naming the groups (e.g. perceived_race) in every source table and benchmark file."
    reference: str
    "Reference group of the disparity index (its rate is the denominator)."
    events: Selection
    "The events counted (e.g. use-of-force incidents): cells of a table this release publishes."
    benchmarks: tuple[Benchmark, ...] = Field(min_length=1)
    "Populations to compare with (TPS: residents from the census, people in enforcement actions)."
    measures: tuple[Literal["disproportionality", "disparity"], ...] = ("disproportionality", "disparity")
    "Which indices to publish."
    replicates: int = Field(default=4000, ge=500, le=50_000)
    "Noise replicates simulated for the intervals of DP figures (post-processing: no budget)."

    @model_validator(mode="after")
    def _check(self) -> IndicesOutput:
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("benchmark names must be unique")
        return self

    def published_stems(self, schema: Schema) -> list[str]:
        return [self.name, self.bench_stem]

    @property
    def bench_stem(self) -> str:
        return f"{self.name}_benchmarks"

    def stem_columns(self, stem: str, schema: Schema) -> list[str]:
        return BENCH_COLUMNS if stem == self.bench_stem else COLUMNS

    def published_columns(self, schema: Schema) -> list[str]:
        return COLUMNS

    def referenced_columns(self) -> list[str]:
        return []

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {"group": self.group, "reference": self.reference, "events": self.events.model_dump(mode="json"),
                "benchmarks": [b.name for b in self.benchmarks], "measures": list(self.measures)}

    # -- sources ------------------------------------------------------------------------------
    def _source_output(self, policy: Any, sel: Selection) -> Any:
        try:
            out = policy.output(sel.output)
        except Exception:  # noqa: BLE001 - policy.output raises its own error type for an unknown name
            out = None
        names = [o.name for o in policy.outputs]
        if out is None or sel.output not in names:
            raise PolicyError(f"output {self.name}: no output named {sel.output!r} to read (outputs: {names})")
        if names.index(sel.output) > names.index(self.name):
            raise PolicyError(f"output {self.name}: it reads {sel.output!r}, which must be listed before it")
        if out.kind not in ("dp-table", "table"):
            raise PolicyError(f"output {self.name}: {sel.output!r} is a {out.kind} output; indices read published"
                              " count tables (dp-table or table)")
        if out.kind == "dp-table" and out.statistic != "count":
            raise PolicyError(f"output {self.name}: {sel.output!r} publishes {out.statistic}s; indices need counts")
        if out.kind == "table" and out.value_column:
            raise PolicyError(f"output {self.name}: {sel.output!r} publishes magnitudes; indices need counts")
        return out

    def _stem(self, out: Any, sel: Selection, schema: Schema) -> str:
        stems = out.published_stems(schema)
        stem = sel.table or stems[0]
        if stem not in stems:
            raise PolicyError(f"output {self.name}: {sel.output!r} publishes no table {stem!r} (it has {stems})")
        return stem

    def _dims(self, out: Any, stem: str, schema: Schema) -> tuple[str, ...]:
        cols = out.stem_columns(stem, schema)
        return tuple(c for c in cols if c not in ("count", "flag", getattr(out, "value_column", None)))

    def _selections(self) -> list[tuple[str, Selection]]:
        return [("events", self.events)] + [(b.name, b.source) for b in self.benchmarks if b.source is not None]

    def _sources(self, policy: Any, schema: Schema, published: dict[str, bytes],
                 bench: pd.DataFrame) -> tuple[dict[str, Source], dict[str, tuple[str, ...]]]:
        """Every table read, each simulated once (figures of one table share its noise replicates)."""
        need: dict[str, tuple[Any, str]] = {}
        for _, sel in self._selections():
            out = self._source_output(policy, sel)
            stem = self._stem(out, sel, schema)
            need[stem] = (out, stem)
        parts = [(f"{stem}.csv", published[f"{stem}.csv"]) for stem in need if f"{stem}.csv" in published]
        missing = [s for s in need if f"{s}.csv" not in published]
        if missing:
            raise PolicyError(f"output {self.name}: the tables {missing} it reads are not published before it")
        # Seeded from the hash of the published tables it post-processes: `release check` draws the same replicates.
        rng = HashStream(seed_of([(self.name, b"indices"), *parts]))
        sources: dict[str, Source] = {}
        dims: dict[str, tuple[str, ...]] = {}
        for stem, (out, _) in sorted(need.items()):
            frame = read_csv_bytes(published[f"{stem}.csv"], schema)
            dims[stem] = self._dims(out, stem, schema)
            if self.group not in frame.columns:
                raise PolicyError(f"output {self.name}: table {stem} has no column {self.group!r}")
            if out.kind == "dp-table":
                figs = out.dp_figures(schema)
                sources[stem] = dp_source(frame, out.value_column, str(figs["mechanism"]), float(figs["scale"]), rng,
                                          self.replicates)
                if len(dims[stem]) and out.margins:
                    pass  # margins are separate stems; the indices sum the cells, whose noise is independent
            else:
                sources[stem] = table_source(frame, dims[stem], out.measure, out.total_label)
        for b in self.benchmarks:
            if b.file is not None:
                sources[f"file:{b.name}"] = file_source(bench[bench["benchmark"] == b.name].reset_index(drop=True)
                                                        .rename(columns={"group": self.group}), "value")
                dims[f"file:{b.name}"] = (self.group,)
        return sources, dims

    # -- indices ------------------------------------------------------------------------------
    def compute(self, sources: dict[str, Source], dims: dict[str, tuple[str, ...]], policy: Any,
                schema: Schema) -> pd.DataFrame:
        ev_stem = self._stem(self._source_output(policy, self.events), self.events, schema)
        ev = sources[ev_stem]
        groups = groups_of(ev, self.group)
        if self.reference not in groups:
            raise PolicyError(f"output {self.name}: reference group {self.reference!r} is not a published value of"
                              f" {self.group!r} in {ev_stem}")

        def q(key: str, sel_where: dict[str, str], g: str | None) -> Quantity:
            return select(sources[key], self.group, g, sel_where, dims[key])

        rows: list[dict[str, Any]] = []
        e_all = q(ev_stem, self.events.where, None)
        for b in self.benchmarks:
            if b.source is not None:
                key = self._stem(self._source_output(policy, b.source), b.source, schema)
                where = b.source.where
            else:
                key, where = f"file:{b.name}", {}
            b_all = q(key, where, None)
            e_ref, b_ref = q(ev_stem, self.events.where, self.reference), q(key, where, self.reference)
            for g in groups:
                e_g, b_g = q(ev_stem, self.events.where, g), q(key, where, g)
                for m in self.measures:
                    if m == "disproportionality":
                        ix = disproportionality(e_g, e_all, b_g, b_all)
                    elif g == self.reference:
                        continue  # the reference group's disparity is 1 by definition
                    else:
                        ix = disparity(e_g, b_g, e_ref, b_ref)
                    rows.append(_row(g, b.name, m, ix))
        return _frame(rows)

    def true_indices(self, frame: pd.DataFrame, policy: Any, schema: Schema, bench: pd.DataFrame) -> list[dict[str, Any]]:
        """The same indices on the unprotected records (internal report only)."""

        def count(sel: Selection, g: str | None) -> Quantity:
            out = self._source_output(policy, sel)
            m = np.ones(len(frame), dtype=bool)
            for c, want in sel.where.items():
                m &= (frame[c].astype("string") == str(want)).fillna(False).to_numpy(dtype=bool)
            if g is not None:
                m &= (frame[self.group].astype("string") == g).fillna(False).to_numpy(dtype=bool)
            col = getattr(out, "count_column", None)
            w = pd.to_numeric(frame.loc[m, col], errors="coerce").fillna(0).sum() if col else m.sum()
            return exact(float(w))

        groups = sorted(frame[self.group].astype("string").dropna().unique().tolist())
        rows = []
        for b in self.benchmarks:
            sub = bench[bench["benchmark"] == b.name]

            def bq(g: str | None, b: Benchmark = b, sub: pd.DataFrame = sub) -> Quantity:
                if b.source is not None:
                    return count(b.source, g)
                v = sub["value"] if g is None else sub.loc[sub["group"] == g, "value"]
                return exact(float(pd.to_numeric(v).sum()))

            for g in groups:
                for m in self.measures:
                    if m == "disproportionality":
                        ix = disproportionality(count(self.events, g), count(self.events, None), bq(g), bq(None))
                    elif g == self.reference:
                        continue
                    else:
                        ix = disparity(count(self.events, g), bq(g), count(self.events, self.reference),
                                       bq(self.reference))
                    rows.append({"group": g, "benchmark": b.name, "measure": m, "true_index": ix.value})
        return rows

    # -- the run ------------------------------------------------------------------------------
    def _bench_table(self, ctx: StepContext) -> pd.DataFrame:
        from release.governance.trusted import trusted_path

        rows = []
        for b in self.benchmarks:
            if b.file is None:
                continue
            path = trusted_path(ctx.options, benchmark_name(b.file), "benchmark", _resolve(b.file, ctx.policy_path))
            assert path is not None
            try:
                f = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
            except (OSError, ValueError, UnicodeDecodeError) as e:
                raise InputError(f"benchmark file {b.file} (output {self.name}, benchmark {b.name}) cannot be read:"
                                 f" {type(e).__name__}") from None
            for c in (self.group, b.value_column):
                if c not in f.columns:
                    raise InputError(f"benchmark file {b.file}: no column {c!r} (output {self.name}, benchmark"
                                     f" {b.name})")
            v = pd.to_numeric(f[b.value_column], errors="coerce")
            bad = np.flatnonzero((v.isna() | (v < 0)).to_numpy()) + 2
            if len(bad):
                raise InputError(f"benchmark file {b.file}: column {b.value_column!r} must hold non-negative numbers"
                                 f" (rows {bad[:20].tolist()})")
            if f[self.group].duplicated().any():
                rows_d = (np.flatnonzero(f[self.group].duplicated().to_numpy()) + 2)[:20].tolist()
                raise InputError(f"benchmark file {b.file}: a group appears twice in {self.group!r} (rows {rows_d})")
            rows.append(pd.DataFrame({"group": f[self.group].astype("string"), "benchmark": b.name,
                                      "value": v.to_numpy(dtype=float)}))
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype="string" if c != "value" else float) for c in BENCH_COLUMNS})
        out = pd.concat(rows, ignore_index=True)
        out["value"] = _as_int_if_whole(out["value"])
        return out

    def build(self, frame: pd.DataFrame, ctx: StepContext) -> OutputBuild:
        from release.plan import compile_plan

        schema = compile_plan(ctx.policy).final_schema
        published: dict[str, bytes] = ctx.options.get("_published") or {}
        bench = self._bench_table(ctx)
        bench_read = read_csv_bytes(_csv(bench), schema)
        sources, dims = self._sources(ctx.policy, schema, published, bench_read)
        table = self.compute(sources, dims, ctx.policy, schema)
        # Beside each published index (and its interval), the index on the unprotected records: internal only.
        pub = {(r["group"], r["benchmark"], r["measure"]): r for r in table.astype(object)
               .where(table.notna(), None).to_dict("records")}
        true = self.true_indices(frame, ctx.policy, ctx.schema, bench_read)
        for r in true:
            p = pub.get((r["group"], r["benchmark"], r["measure"])) or {}
            r.update(published_index=p.get("index"), lower=p.get("lower"), upper=p.get("upper"),
                     inside=r["true_index"] is not None and p.get("lower") is not None
                     and p["lower"] <= r["true_index"] and (p.get("upper") is None or r["true_index"] <= p["upper"]))
        internal = {"true_indices": true}
        evidence = {"rows": int(len(table)), "unbounded": int((table["upper"].isna()).sum())}
        return OutputBuild(tables={self.name: table, self.bench_stem: bench}, evidence=evidence, internal=internal)

    # -- the assessment (published files only) ----------------------------------------------
    def assess(self, tables: dict[str, pd.DataFrame], ctx: AssessContext) -> dict[str, Any]:
        from release.io.bundle import table_to_csv
        from release.plan import compile_plan

        schema = compile_plan(ctx.policy).final_schema
        published: dict[str, bytes] = ctx.options.get("_published") or {}
        file = ctx.files.get(self.name)
        t = tables[self.name]
        bench = tables[self.bench_stem]
        try:
            sources, dims = self._sources(ctx.policy, schema, published, bench)
            mine = self.compute(sources, dims, ctx.policy, schema)
        except (PolicyError, KeyError, ValueError) as e:
            ctx.finding("indices-recomputed", False, f"the indices cannot be recomputed from the published tables"
                        f" ({type(e).__name__})", file=file)
            return {"indices": {"rows": int(len(t))}}
        same = table_to_csv(mine) == published.get(f"{self.name}.csv")
        ctx.finding("indices-recomputed", same, f"all {len(mine)} published indices and intervals recomputed from the"
                    " published tables" if same else "published indices or intervals differ from those recomputed"
                    " from the published tables", file=file)
        figs = {"rows": int(len(t)), "group": self.group, "reference": self.reference,
                "benchmarks": [{"name": b.name, "description": b.description,
                                "source": b.file and Path(b.file).name or (b.source.output if b.source else None)}
                               for b in self.benchmarks],
                "methods": sorted(set(mine["method"].astype(str))),
                "unbounded": int(mine["upper"].isna().sum()),
                "level": 0.95, "replicates": self.replicates}
        return {"indices": figs, "rows": int(len(t))}


def _row(g: str, bench: str, measure: str, ix: Index) -> dict[str, Any]:
    return {"group": g, "benchmark": bench, "measure": measure, "index": ix.value, "lower": ix.lower,
            "upper": ix.upper, "method": ix.method, "flag": ix.flag}


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("group", "benchmark", "measure", "method", "flag"):
        f[c] = f[c].astype("string")
    for c in ("index", "lower", "upper"):
        f[c] = pd.to_numeric(f[c]).astype("Float64")
    return f


def _as_int_if_whole(v: pd.Series) -> pd.Series:
    a = v.to_numpy(dtype=float)
    return pd.Series(pd.array(a.astype(np.int64), dtype="Int64")) if np.all(a == np.round(a)) else v


def _csv(f: pd.DataFrame) -> bytes:
    from release.io.bundle import table_to_csv

    return table_to_csv(f)


def benchmark_name(file: str) -> str:
    return f"benchmark:{Path(file).name}"


def _resolve(file: str, policy_path: Path | None) -> Path:
    p = Path(file)
    return p if p.is_absolute() or policy_path is None else policy_path.parent / p


def referenced_files(policy: Any, policy_path: Path | None, options: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """REFERENCED_FILES hook: every public benchmark file an indices output names (the approval covers each)."""
    return [(benchmark_name(b.file), "benchmark", _resolve(b.file, policy_path))
            for o in policy.outputs if getattr(o, "kind", None) == "indices" for b in o.benchmarks if b.file]


registry.add_hook(registry.REFERENCED_FILES, referenced_files)
