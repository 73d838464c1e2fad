"""`release run --engine spark`: one release with its records in Spark partitions and the same bundle as the local runner.

What runs where:
- executors: reading the Parquet files or catalog table; the record-id rule (an accumulator per
  partition); validation and the row-local steps (the engine's RowPipeline through mapInArrow),
  reading the network, address and layer files the driver read and shipped (release.spark.files);
  the contribution bounding and the exact counts of DP tables (window functions and group-bys);
  the cell counts of `table` outputs and k-anonymity's frequency table (group-bys) and its
  recoding (a join); the row-local steps after a k-anonymity step (the same RowPipeline);
- driver: the approval and every other pre-run hook, the merge of the partitions' results, the
  k-anonymity search on the frequency table, a series' keep-earlier / refine adjustment, OpenDP
  noise, suppression and the LP audit on the cell counts, any step needing the whole frame, the
  assessment, the writers, the signature and the atomic rename (release.engine._finish).

A policy whose outputs are all DP tables and `table` outputs sends the driver only their
aggregates; otherwise the rows the steps left are collected for the driver-side steps and outputs
(docs/spark.md says how big each can get). The driver-side code is the local runner's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from release import registry
from release.context import StepContext, test_mode
from release.errors import UsageError
from release.validate import ValidationReport

ENGINE_NAME = "release-engine on Apache Spark"
_PRUNABLE = ("records", "table")
"Output kinds that read only their referenced_columns: the driver gets only those columns for them."


def engine_of(options: dict[str, Any]) -> str:
    """The runner a `release run` uses: --engine, else release.toml's [engine] name, else local."""
    from release.governance.config import load_config

    return str(options.get("engine") or load_config(options).engine.name)


def run_release_spark(policy_path: str | Path, input_path: str | Path | None, out_dir: str | Path, *,
                      options: dict[str, Any] | None = None, seed: int | None = None,
                      progress: Any = None, now: datetime | None = None) -> Any:
    """`release.engine.run_release` with the records in Spark (options['spark_table']: a catalog table)."""
    from release.batches import run_key
    from release.engine import (
        Staging,
        _finish,
        _policy_text,
        _quiet,
        driver_steps,
        internal_folder,
        new_release_id,
    )
    from release.governance.config import file_options
    from release.governance.signing import release_signer
    from release.governance.trusted import Subject, TrustedFiles, read_once
    from release.plan import compile_plan
    from release.policy.loader import parse_policy
    from release.spark import session as S
    from release.spark.files import ship
    from release.spark.source import read
    from release.validate import check_empty

    progress = progress or _quiet
    if seed is not None and not test_mode():
        raise UsageError("a seed fixes the noise and the masks: it is refused outside test mode (RELEASE_TEST_MODE=1)")
    options = file_options(dict(options or {}))
    table = options.get("spark_table")
    policy_path, out_dir = Path(policy_path), Path(out_dir)
    t0 = time.perf_counter()
    policy_bytes = read_once(policy_path, "policy file")
    policy = parse_policy(_policy_text(policy_bytes, policy_path), str(policy_path))
    plan = compile_plan(policy)
    if getattr(policy.input, "source", None) is not None and input_path is None and table is None:
        raise UsageError("--engine spark reads Parquet or a Spark catalog table; the policy's input.source is a"
                         " database: run it with --engine local, or give --input/--table")
    settings = S.settings(options)
    why = S.unavailable()
    if why:
        raise UsageError(f"--engine spark: {why}")
    signer = release_signer(options)
    internal_dir = internal_folder(options, out_dir)
    trusted = TrustedFiles()
    options.update(_trusted=trusted, _policy_bytes=policy_bytes, _out_dir=str(out_dir))
    try:
        with trusted.labels():
            for hook in registry.PRE_RUN:
                hook(policy, policy_path, options)
            now = now or datetime.now(UTC)
            release_id = new_release_id(now, out_dir / policy.dataset.name)
            spark = S.session(settings, policy.dataset.name)
            df, src = read(spark, input_path, table)
            progress(f"reading {src.label} on Spark {spark.version} ({spark.sparkContext.master})")
            if src.sha256 is not None:
                trusted.subjects["input"] = Subject("input", "records", src.sha256, src.size)
            ctx = StepContext(policy=policy, policy_path=policy_path, schema=plan.schemas[0], release_id=release_id,
                              now=now, seed=seed, options=options, run_key=run_key(seed))
            ctx.manifest["engine"] = ENGINE_NAME
            ctx.manifest["spark"] = {"version": spark.version, "master": spark.sparkContext.master,
                                     "source": src.manifest}
            # The network, layers and hierarchies the run read (its approved copies) go to the executors.
            files = ship(spark, trusted)
            staging = Staging(out_dir, policy.dataset.name, release_id)
            try:
                rows, cached, vreport = row_stage(spark, df, src, plan, ctx, progress, check_empty, files)
                held = [cached]
                try:
                    rows, adjust = spark_steps(rows, plan, ctx, progress, held, files)
                    streams = {} if adjust else records_stage(rows, plan, ctx, staging, progress)
                    frame = aggregate_stage(rows, plan, ctx, progress, whole=adjust) if not streams else None
                    if adjust:
                        frame = series_adjustment(frame, ctx, progress)
                finally:
                    for d in held:
                        d.unpersist()
                frame = driver_steps(frame, policy, plan, ctx, progress, " (on the driver)")
                return _finish(policy, policy_bytes, plan, ctx, frame, vreport, out_dir, internal_dir, signer,
                               progress, t0, streams=streams, staging=staging)
            finally:
                staging.discard()
    finally:
        trusted.close()


def row_stage(spark: Any, df: Any, src: Any, plan: Any, ctx: StepContext, progress: Any,
              check_empty: Any, files: Any = None) -> tuple[Any, Any, ValidationReport]:
    """Validation and the row-local steps on the executors: (their rows, the persisted frame, the report).

    The same sequence as release.engine._run_row_pipeline, partition by partition.
    """
    from release.batches import ROW, row_pipeline
    from release.engine import record_pipeline_steps
    from release.spark.rows import duplicate_rows, run_pipeline, with_row_numbers
    from release.validate import ValidationReport as VR
    from release.validate import check_columns, merge_reports, raise_if_refused

    policy = ctx.policy
    names = [c for c in df.columns]
    n_rows = df.count()
    progress(f"validating {n_rows:,} records against {ctx.policy_path.name if ctx.policy_path else 'the policy'}"
             f" in {df.rdd.getNumPartitions()} partition(s)")
    check_empty(n_rows, policy, src.label)
    root = Path(src.label) if src.manifest.get("kind") == "parquet" else None
    numbered = with_row_numbers(spark, df, src.manifest.get("files"), root).select(*names, ROW)
    exclude = duplicate_rows(numbered, policy)
    columns = check_columns(names, policy)
    if columns:
        # Missing or undeclared columns stop the run: every row is validated only to list every rule broken.
        from release.spark.rows import ValidateOnly
        from release.spark.stages import accumulate

        (rep,) = accumulate(numbered, [ValidateOnly(policy, ctx.now, tuple(int(r) for r in exclude))])
        raise_if_refused(merge_reports(VR(rows_read=0, violations=columns), rep or VR(rows_read=0)), policy,
                         src.label)
    pipe = row_pipeline(plan, ctx, exclude_rows=exclude)
    rows, result, cached = run_pipeline(numbered, pipe, files)
    vreport = result.validation or VR(rows_read=0)
    try:
        raise_if_refused(vreport, policy, src.label)
        record_pipeline_steps(pipe, result, plan, ctx, progress, "on the executors")
    except BaseException:
        cached.unpersist()
        raise
    return rows, cached, vreport


def spark_steps(rows: Any, plan: Any, ctx: StepContext, progress: Any, held: list[Any],
                files: Any = None) -> tuple[Any, bool]:
    """The steps after the leading row-local ones, for as long as they can run on Spark: (the rows, whether the
    last k-anonymity step still owes its series adjustment on the driver).

    A k-anonymity step runs as its frequency table (a group-by), the search on the driver and the recoding
    joined back (release.spark.anonymize); the row-local steps after it run partition-wise over the recoded
    rows (the engine's row pipeline without validation). In a re-release series whose k-anonymity step moves
    joined records back to their earlier values (adjusts_series), that adjustment needs the whole output:
    the rows then go to the driver, which adjusts them and runs every later step. A step that is neither
    (one needing the whole frame) and every step after it run on the driver over the collected rows."""
    from release.spark.anonymize import adjusts_series, apply_k_anonymity, runs_on_spark

    steps = ctx.policy.steps
    while (i := len(ctx.step_evidence)) < len(steps):
        if runs_on_spark(steps[i], list(rows.columns)):
            rows, ft = apply_k_anonymity(rows, i, plan, ctx, progress)
            held.append(ft)
            if adjusts_series(ctx.policy, ctx.options):
                return rows, True
        elif getattr(type(steps[i]), "row_local", False):
            rows, cached = row_steps(rows, i, plan, ctx, progress, files)
            held.append(cached)
        else:
            break
    return rows, False


def records_stage(rows: Any, plan: Any, ctx: StepContext, staging: Any, progress: Any) -> dict[str, Any]:
    """When every step ran on the executors and every output is `records`: the rows stream to the
    driver a partition at a time into the local runner's external sorts (release.engine._record_streams),
    which _finish merges into the same files in canonical order. {} otherwise (nothing read).

    No frame of all the rows is built on the driver, nor collected in the JVM: at ten million rows
    collecting them at once exhausted the driver's heap.
    """
    from release.batches import arrow_schema
    from release.engine import _record_streams, _sink
    from release.spark.stages import stream_batches

    policy = ctx.policy
    if len(ctx.step_evidence) < len(policy.steps):
        return {}
    streams = _record_streams(policy, plan, ctx, staging)
    if not streams:
        return {}
    ctx.options["_prebuilt"] = {}
    schema = arrow_schema(plan.schemas[len(ctx.step_evidence)])
    needed = list(dict.fromkeys(c for s in streams.values() for c in s.schema.names))
    declared = pa.schema([schema.field(c) for c in needed])
    held = _sparkable(declared)
    progress(f"streaming {len(needed)} column(s) of the rows to the driver's external sort, a partition at a time")
    take, n = _sink(streams), 0
    for b in stream_batches(rows.select(*needed)):
        take(pa.Table.from_batches([b.cast(held) if b.schema != held else b]).cast(declared))
        n += b.num_rows
    progress(f"{n:,} row(s) sorted for {len(streams)} records output(s)")
    return streams


def series_adjustment(frame: pd.DataFrame, ctx: StepContext, progress: Any) -> pd.DataFrame:
    """The last k-anonymity step's series.joint adjustment (keep-earlier / refine) over the collected recoded
    rows, its figures added to the step's evidence, as KAnonymityStep.apply does in the local runner."""
    from release.series.records import keep_series

    ev = ctx.step_evidence[-1]
    step = ctx.policy.steps[ev["index"]]
    ts = time.perf_counter()
    joint = getattr(ctx.policy.series, "joint", None)
    progress(f"  series.joint {joint}: {len(frame):,} recoded records against earlier releases (on the driver)")
    frame, _ = keep_series(step, frame, ev, ctx)
    ev["seconds"] = round(ev["seconds"] + time.perf_counter() - ts, 3)
    return frame


def row_steps(rows: Any, first: int, plan: Any, ctx: StepContext, progress: Any, files: Any) -> tuple[Any, Any]:
    """Policy steps `first`.. (the row-local run starting there) partition-wise over rows a global step left:
    (their rows, the persisted frame to unpersist). The same RowPipeline as the row stage, without validation
    (the rows are typed already); its evidence is merged over the partitions as the row stage's is."""
    from release.batches import BatchContext, RowPipeline, arrow_schema
    from release.engine import record_pipeline_steps
    from release.spark.rows import run_pipeline

    steps = ctx.policy.steps
    last = first
    while last + 1 < len(steps) and getattr(type(steps[last + 1]), "row_local", False):
        last += 1
    idx = tuple(range(first, last + 1))
    pipe = RowPipeline(BatchContext.of(ctx), idx, tuple(plan.schemas[first:last + 2]), validate=False)
    out, result, cached = run_pipeline(rows, pipe, files)
    if len(result.evidence) != len(idx):
        # No partition held a row (every record suppressed): the steps' evidence of an empty frame, here.
        pipe._step_context().options["_trusted"] = ctx.options.get("_trusted")
        result = result.merge(pipe.process(arrow_schema(plan.schemas[first]).empty_table())[1])
    record_pipeline_steps(pipe, result, plan, ctx, progress, "on the executors")
    ctx.schema = plan.schemas[last + 1]
    return out, cached


def aggregate_stage(rows: Any, plan: Any, ctx: StepContext, progress: Any, whole: bool = False) -> pd.DataFrame:
    """DP tables and `table` outputs as Spark aggregates (their builds handed to the engine); the driver
    frame the rest needs.

    When every step ran on the executors, a DP table needs only its exact aggregate on the driver
    (release.spark.dp), a `table` output its cell counts (release.spark.tables), and the rows are
    collected only when another output (records, indices) or a driver-side step (k-anonymity) reads them.
    """
    from functools import partial

    from release.batches import to_frame
    from release.spark.dp import NotNative, bounded_groups
    from release.spark.tables import cell_counts as table_counts

    policy = ctx.policy
    # `whole`: the driver adjusts the rows before anything is built from them (a series adjustment).
    remaining = whole or len(ctx.step_evidence) < len(policy.steps)
    prebuilt: dict[str, Any] = {}
    if not remaining:
        for out in policy.outputs:
            # A removed privacy-unit column is the local build's located error: left to it.
            unit = policy.budget.privacy_unit if policy.budget is not None else None
            if out.kind == "dp-table" and unit in rows.columns:
                try:
                    groups, stats = bounded_groups(rows, out, ctx)
                except NotNative as why:
                    progress(f"output {out.name}: built on the driver ({why})")
                    continue
                progress(f"output {out.name}: contribution bounding and exact counts on Spark")
                prebuilt[out.name] = partial(out.build_from_groups, groups, stats, ctx)
            elif out.kind == "table":
                counts = table_counts(rows, out, ctx.schema)
                if counts is None:
                    progress(f"output {out.name}: built on the driver from its columns")
                    continue
                progress(f"output {out.name}: cell counts on Spark ({len(counts):,} combinations to the driver)")
                prebuilt[out.name] = partial(out.build_from_counts, counts, ctx)
    ctx.options["_prebuilt"] = prebuilt
    schema = _pipeline_schema(plan, ctx)
    if not remaining and all(o.name in prebuilt for o in policy.outputs):
        return to_frame(schema.empty_table())
    left = [o for o in policy.outputs if o.name not in prebuilt]
    if remaining or any(o.kind not in _PRUNABLE for o in left):
        # A later step, a driver-side DP bounding (scores over every column), or an output kind whose
        # reads are not all in its referenced_columns (indices read events from the rows): every column.
        needed = list(schema.names)
    else:
        needed = [c for c in schema.names if c in {c for o in left for c in o.referenced_columns()}]
    schema = pa.schema([schema.field(c) for c in needed])
    progress(f"collecting {len(needed)} column(s) of the rows to the driver for {', '.join(o.name for o in left)}")
    got = pa.Table.from_batches(_collect(rows.select(*needed)), schema=_sparkable(schema))
    return to_frame(got.cast(schema))


def _pipeline_schema(plan: Any, ctx: StepContext) -> pa.Schema:
    from release.batches import arrow_schema

    return arrow_schema(plan.schemas[len(ctx.step_evidence)])


def _sparkable(schema: pa.Schema) -> pa.Schema:
    from release.spark.rows import sparkable

    return sparkable(schema)


def _collect(rows: Any) -> list[pa.RecordBatch]:
    from release.spark.stages import collect_batches

    schema = _sparkable_of(rows)
    return [b.cast(schema) if b.schema != schema else b for b in collect_batches(rows)]


def _sparkable_of(rows: Any) -> pa.Schema:
    from release.spark.stages import arrow_schema

    s = arrow_schema(rows)
    # Spark hands naive timestamps back as microseconds without a zone.
    return pa.schema([pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type) for f in s])
