"""Execute a plan: validate, run steps, build outputs, assess them, gate, write the bundle."""

from __future__ import annotations

import platform
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from release import registry
from release.batches import run_key
from release.context import AssessContext, Finding, OutputBuild, StepContext, test_mode
from release.errors import BlockedError, PolicyError, UsageError
from release.io.bundle import (
    canonical_json,
    read_published_csv,
    sha256_bytes,
    write_bundle,
)
from release.io.readers import CsvBatches, is_csv, read_arrow
from release.plan import Plan, compile_plan
from release.policy.base import Role, Schema
from release.policy.loader import load_policy, parse_policy
from release.policy.models import Policy
from release.validate import ValidationReport, check_empty

Progress = Callable[[str], None]

DEPENDENCIES = ("opendp", "pandas", "pyarrow", "numpy", "scipy", "pyproj", "shapely", "pydantic", "click",
                "cryptography", "matplotlib")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("release-engine", *DEPENDENCIES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def new_release_id(now: datetime, parent: Path | None = None) -> str:
    """A release id not used in `parent` yet (a repeated id gets a new one, never an error)."""
    while True:
        rid = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
        if parent is None or not ((parent / rid).exists() or (parent / f".staging-{rid}").exists()):
            return rid


def internal_folder(options: dict[str, Any], out_dir: Path) -> Path:
    """Where internal diagnostics go: release.toml [internal] folder, else OUT.internal beside OUT; never inside OUT."""
    from release.governance.config import load_config

    folder = load_config(options).internal or out_dir.parent / f"{out_dir.name}.internal"
    o, i = out_dir.absolute().resolve(), folder.absolute().resolve()
    if i == o or o in i.parents:
        raise UsageError(f"the internal folder {folder} lies inside the publication folder {out_dir}: internal"
                         " diagnostics must never sit where bundles are published (set [internal] folder)")
    return folder


@dataclass
class RunResult:
    """The outcome of a run: its report and, when it passed, where the bundle is."""

    report: dict[str, Any]
    bundle: Path | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


def _quiet(_: str) -> None:
    return None


def published_files(out: Any, build: OutputBuild) -> dict[str, dict[str, str]]:
    """table stem -> {format: relative path} for one output."""
    files: dict[str, dict[str, str]] = {}
    for stem in build.tables:
        files[stem] = {"csv": f"{stem}.csv", "parquet": f"{stem}.parquet"}
        if build.geo:
            files[stem]["geojson"] = f"{stem}.geojson"
    return files


def assess_output(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """The output's own assessment plus every plug-in assessor of its kind."""
    figures = dict(out.assess(tables, actx))
    for fn in registry.ASSESSORS.get(out.kind, []):
        figures.update(fn(out, tables, actx) or {})
    return figures


def direct_identifier_findings(policy: Policy, output: str, columns: list[str], file: str | None,
                               schema: Schema | None = None) -> list[Finding]:
    ids = set(policy.input.role_columns(Role.direct_identifier))
    if schema is not None:
        # Columns pseudonymized by a step are no longer direct identifiers.
        ids = {c for c in ids if c not in schema or schema[c].role == Role.direct_identifier}
    leaked = sorted(ids & set(columns))
    return [Finding("direct-identifiers", not leaked,
                    "no direct-identifier column published" if not leaked else
                    f"direct-identifier column(s) published: {leaked}", output=output, file=file)]


def run_release(policy_path: str | Path, input_path: str | Path | None, out_dir: str | Path, *,
                options: dict[str, Any] | None = None, seed: int | None = None,
                progress: Progress = _quiet, now: datetime | None = None) -> RunResult:
    """Run one release. Raises PolicyError/InputError (exit 2) or BlockedError (exit 1)."""
    from release.governance.config import file_options
    from release.governance.signing import release_signer
    from release.governance.trusted import Subject, TrustedFiles, read_once
    from release.io.postgres import read_records, source_for

    if seed is not None and not test_mode():
        raise UsageError("a seed fixes the noise and the masks: it is refused outside test mode (RELEASE_TEST_MODE=1)")
    options = file_options(dict(options or {}))
    policy_path = Path(policy_path)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    # The policy is read once: these bytes are parsed, checked against the approval and published.
    policy_bytes = read_once(policy_path, "policy file")
    policy = parse_policy(_policy_text(policy_bytes, policy_path), str(policy_path))
    plan = compile_plan(policy)
    # A postgresql:// URL (or the policy's input.source) is a database; anything else a file.
    db = source_for(input_path, options, policy)
    records = Path(input_path) if db is None and input_path is not None else None
    input_label = str(records) if db is None else db.label
    signer = release_signer(options)
    internal_dir = internal_folder(options, out_dir)
    trusted = TrustedFiles()
    # _out_dir: the publication folder, whose bundles' recorded spends the budget ledger must hold.
    options.update(_trusted=trusted, _policy_bytes=policy_bytes, _out_dir=str(out_dir))
    try:
        with trusted.labels():
            for hook in registry.PRE_RUN:
                hook(policy, policy_path, options)
            now = now or datetime.now(UTC)
            release_id = new_release_id(now, out_dir / policy.dataset.name)
            progress(f"reading {input_label}")
            if records is not None:
                copy = trusted.take("input", "records", records, covered=False)
                # CSV is read as a stream of batches (twice: the record ids, then everything); Parquet whole.
                raw: Any = CsvBatches(copy, policy.input) if is_csv(copy) else read_arrow(copy, policy.input)
                names = list(raw.names) if isinstance(raw, CsvBatches) else list(raw.column_names)
            else:
                assert db is not None
                got = read_records(db, policy)
                raw = got.frame
                names = list(raw.columns)
                trusted.subjects["input"] = Subject("input", "records", got.sha256, got.hashed_bytes)
            ctx = StepContext(policy=policy, policy_path=policy_path, schema=plan.schemas[0], release_id=release_id,
                              now=now, seed=seed, options=options, run_key=run_key(seed))
            if db is not None:
                ctx.manifest["input_source"] = got.manifest
            staging = Staging(out_dir, policy.dataset.name, release_id)
            try:
                # Records outputs stream through the external sort; table outputs accumulate their counts
                # (aggregate_sink); either way no frame is built. Outputs that read a few columns (dp-table)
                # get a frame of just those (pruned_sink). Otherwise the whole-frame path.
                streams = _record_streams(policy, plan, ctx, staging)
                sink = _sink(streams) if streams else aggregate_sink(policy, plan, ctx)
                pruned = pruned_sink(policy, plan, ctx) if sink is None else None
                frame, vreport = _run_row_pipeline(raw, names, plan, ctx, input_label, progress,
                                                   sink=sink or pruned)
                del raw
                if pruned is not None:
                    frame = pruned.frame()
                # Handed over in a list that _finish empties once the outputs are built, so the frame
                # is gone before the assessment reads the published files back (no reference kept here).
                held = [driver_steps(frame, policy, plan, ctx, progress)]
                del frame
                return _finish(policy, policy_bytes, plan, ctx, held, vreport, out_dir, internal_dir, signer,
                               progress, t0, streams=streams, staging=staging)
            finally:
                staging.discard()
    finally:
        trusted.close()


class Staging:
    """The bundle's staging folder, made when the first file is streamed into it; discarded unless renamed."""

    def __init__(self, out_dir: Path, dataset: str, release_id: str) -> None:
        from release.io.bundle import staging_folder

        self.path = staging_folder(out_dir, dataset, release_id)
        self._made: list[Path] = []

    def folder(self) -> Path:
        if not self.path.is_dir():
            missing = []
            d = self.path
            while not d.exists():
                missing.append(d)
                d = d.parent
            for d in reversed(missing):
                try:
                    d.mkdir()
                except OSError as e:
                    raise UsageError(f"cannot create the publish folder {d}: {e.strerror or e}; nothing was"
                                     " published") from None
                self._made.append(d)
        return self.path

    def discard(self) -> None:
        """After the rename this finds nothing; after a failure it takes away what the run made."""
        import shutil

        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        for d in reversed(self._made[:-1]):
            try:
                d.rmdir()  # only if still empty: another release may have published there meanwhile
            except OSError:
                break


def _record_streams(policy: Policy, plan: Plan, ctx: StepContext, staging: Staging) -> dict[str, Any]:
    """Records outputs written from the row pipeline's batches (external sort, streamed files), when
    nothing needs the whole frame: every step is row-local and every output streams. {} otherwise."""
    from release.batches import arrow_schema
    from release.io.extsort import ExternalSort, sort_memory_bytes

    if test_mode() and ctx.options.get("_records_in_memory"):
        return {}  # test hook: the whole-frame path, to compare bytes with
    if not _rows_flow(policy) or ctx.options.get("_prebuilt"):
        return {}
    if not all(getattr(o, "streams", False) for o in policy.outputs):
        return {}
    schema = arrow_schema(plan.schemas[-1])
    budget = sort_memory_bytes() // len(policy.outputs)
    out: dict[str, Any] = {}
    for o in policy.outputs:
        cols = list(dict.fromkeys(o.columns))
        out[o.name] = ExternalSort(pa_select(schema, cols), o.sort_keys(), staging.folder() / ".sort" / o.name,
                                   memory_bytes=budget)
    return out


def pa_select(schema: Any, columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns])


def _sink(streams: dict[str, Any]) -> Callable[[Any], None]:
    def take(batch: Any) -> None:
        for sorter in streams.values():
            sorter.add(batch.select(sorter.schema.names))
    return take


def record_pipeline_steps(pipe: Any, result: Any, plan: Plan, ctx: StepContext, progress: Progress,
                          where: str) -> None:
    """Record the row pipeline's steps (evidence merged over its batches) as the run's first steps."""
    steps = ctx.policy.steps
    for j, (i, ev) in enumerate(zip(pipe.steps, result.step_evidence(), strict=True)):
        progress(f"step {i + 1}/{len(steps)}: {steps[i].describe()} ({where})")
        ctx.step_evidence.append({"index": i, "type": steps[i].type, "seconds": round(result.seconds[j], 3), **ev})
    ctx.manifest.update(result.manifest)
    ctx.schema = plan.schemas[len(pipe.steps)]


def driver_steps(frame: pd.DataFrame, policy: Policy, plan: Plan, ctx: StepContext, progress: Progress,
                 where: str = "") -> pd.DataFrame:
    """The steps after the row pipeline (those needing the whole frame), then the PRE_OUTPUT hooks."""
    for i in range(len(ctx.step_evidence), len(policy.steps)):
        step = policy.steps[i]
        ts = time.perf_counter()
        progress(f"step {i + 1}/{len(policy.steps)}: {step.describe()}{where}")
        ctx.schema = plan.schemas[i]
        frame, ev = step.apply(frame, ctx)
        ctx.schema = plan.schemas[i + 1]
        ctx.step_evidence.append({"index": i, "type": step.type, "seconds": round(time.perf_counter() - ts, 3),
                                  **ev})
    for hook in registry.PRE_OUTPUT:
        hook(policy, ctx)
    return frame


def _rows_flow(policy: Policy) -> bool:
    """Whether every step is row-local and there are outputs: only then may a sink take the batches."""
    from release.batches import row_local_prefix

    return len(row_local_prefix(policy)) == len(policy.steps) and bool(policy.outputs)


def aggregate_sink(policy: Policy, plan: Plan, ctx: StepContext) -> Callable[[Any], None] | None:
    """Where every step is row-local and every output has an accumulator (OutputConfig.accumulator:
    `table` outputs whose cell counts add up exactly), the row pipeline's batches feed the accumulators
    and no frame is built; the outputs are then built from them (ctx.options['_prebuilt'], as
    release/spark hands over its group-bys), raising the same located errors at the same point.
    None otherwise."""
    from functools import partial

    from release.batches import to_frame

    if not _rows_flow(policy):
        return None
    schema = plan.schemas[-1]
    accs = {o.name: o.accumulator(schema) for o in policy.outputs}
    if any(a is None for a in accs.values()):
        return None
    states = {n: a.create() for n, a in accs.items()}
    columns = list(dict.fromkeys(c for a in accs.values() for c in a.columns))
    if any(c not in schema for c in columns):
        return None  # the frame path's build names the missing column

    def take(batch: Any) -> None:
        frame = to_frame(batch.select(columns))
        for n, a in accs.items():
            states[n] = a.add(states[n], frame)

    def build(out: Any) -> Any:
        return out.build_accumulated(accs[out.name], states[out.name], ctx)

    ctx.options["_prebuilt"] = {o.name: partial(build, o) for o in policy.outputs}
    return take


class PrunedFrame:
    """A row-pipeline sink keeping, per batch, only the columns the outputs' builds read, plus (when asked)
    ROW_DIGEST: the bits of each row's contribution-bounding score over the batch's every column
    (release.dp.bounding.BoundingKey.row_scores under the run key), as the whole frame would score it
    (the score is per row and reads the pipeline's declared types, which each batch holds)."""

    def __init__(self, schema: Any, columns: list[str], digest: Any) -> None:
        self.schema = pa_select(schema, columns)
        self.columns = columns
        self.digest = digest
        "None, or the release.dp.bounding.BoundingKey scoring the rows."
        self.parts: list[Any] = []
        self.digests: list[np.ndarray] = []

    def __call__(self, batch: Any) -> None:
        import pyarrow as pa

        if self.digest is not None:
            self.digests.append(self.digest.row_scores(pa.Table.from_batches([batch])).view(np.uint64))
        self.parts.append(batch.select(self.columns))

    def frame(self) -> pd.DataFrame:
        """The kept columns of every batch, in order (as the whole frame's rows), with their digests."""
        import pyarrow as pa

        from release.batches import ROW_DIGEST, to_frame

        table = pa.Table.from_batches(self.parts, schema=self.schema)
        self.parts = []
        frame = to_frame(table)
        del table
        if self.digest is not None:
            # Beside to_frame: its integer mapping is for signed (nullable) columns, not a uint64 digest.
            frame[ROW_DIGEST] = np.concatenate(self.digests) if self.digests else np.zeros(0, dtype=np.uint64)
            self.digests = []
        return frame


def pruned_sink(policy: Policy, plan: Plan, ctx: StepContext) -> PrunedFrame | None:
    """Where every step is row-local and every output names the only columns its build reads
    (OutputConfig.frame_columns: dp-table), the frame handed to the outputs holds just those, taken from
    each batch as it goes by; the rest of each batch is let go. None otherwise (the whole-frame path)."""
    from release.batches import ROW_DIGEST, arrow_schema
    from release.dp.bounding import bounding_key

    if test_mode() and ctx.options.get("_frame_in_memory"):
        return None  # test hook: the whole-frame path, to compare with
    if not _rows_flow(policy) or ctx.options.get("_prebuilt"):
        return None
    schema = plan.schemas[-1]
    wanted = [o.frame_columns(policy, schema) for o in policy.outputs]
    if any(w is None for w in wanted):
        return None
    names = {c for w in wanted for c in w or ()}
    digest = ROW_DIGEST in names
    names.discard(ROW_DIGEST)
    if any(c not in schema for c in names):
        return None  # the frame path's build names the missing column
    key = bounding_key(ctx.run_key or ctx.seed) if digest else None  # the key DPTableOutput bounds with
    return PrunedFrame(arrow_schema(schema), [c for c in schema if c in names], key)


def batch_rows(options: dict[str, Any]) -> int:
    """Rows per batch: the `batch_rows` option (or $RELEASE_BATCH_ROWS), else the default."""
    import os

    from release.batches import DEFAULT_BATCH_ROWS

    got = options.get("batch_rows") or os.environ.get("RELEASE_BATCH_ROWS")
    try:
        n = int(got) if got else DEFAULT_BATCH_ROWS
    except ValueError:
        raise UsageError(f"batch rows must be a whole number, not {got!r}") from None
    if n < 1:
        raise UsageError("batch rows must be at least 1")
    return n


def _raw_batches(raw: Any, rows: int, columns: list[str] | None = None) -> Iterator[tuple[Any, int]]:
    """(batch, row offset) of `rows` rows over a CSV stream, an Arrow table or a pandas frame (a database read)."""
    import pyarrow as pa

    from release.batches import iter_batches

    if isinstance(raw, CsvBatches):
        # The reader's blocks re-cut into batches of exactly `rows` rows (the last one shorter).
        off = 0
        rest: pa.Table | None = None
        for b in raw.batches(columns):
            t = pa.Table.from_batches([b])
            t = t if rest is None else pa.concat_tables([rest, t])
            while t.num_rows >= rows:
                yield t.slice(0, rows).combine_chunks().to_batches()[0], off
                off += rows
                t = t.slice(rows)
            rest = t
        if rest is not None and rest.num_rows:
            yield rest.combine_chunks().to_batches()[0], off
        elif off == 0:
            yield pa.RecordBatch.from_pydict({n: pa.array([], pa.string()) for n in (columns or raw.names)}), 0
        return
    if columns is not None:
        raw = raw.select(columns) if isinstance(raw, pa.Table) else raw[columns]
    if isinstance(raw, pa.Table):
        off = 0
        for b in iter_batches(raw, rows):
            yield b, off
            off += b.num_rows
        return
    n = len(raw)
    for off in range(0, max(n, 1), rows):
        yield raw.iloc[off:off + rows].reset_index(drop=True), off


def _run_row_pipeline(raw: Any, names: list[str], plan: Plan, ctx: StepContext, source: str,
                      progress: Progress, sink: Callable[[Any], None] | None = None
                      ) -> tuple[pd.DataFrame, ValidationReport]:
    """Validation and the row-local steps, batch by batch (release.batches); the typed frame they leave.

    Batches are cut from the input in order, but nothing depends on the cut: validation and
    every row-local step are per-row functions, figures merge, and the record-id rule runs over
    all batches (an accumulator) before the pipeline.
    """
    import pyarrow as pa

    from release.batches import (
        BatchResult,
        DuplicateIds,
        _ProcessCache,
        raw_frame,
        row_pipeline,
        to_frame,
    )
    from release.validate import check_columns, merge_reports, raise_if_refused, typed_ids

    policy = ctx.policy
    rows = batch_rows(ctx.options)
    rid = policy.input.record_id
    exclude: np.ndarray = np.zeros(0, dtype=np.int64)
    # First pass, one column: the number of records and the record ids repeated anywhere in the input.
    has_id = rid in names and rid in policy.input.columns
    dups = DuplicateIds(rid)
    state = dups.create()
    n_rows = 0
    for b, off in _raw_batches(raw, rows, [rid if has_id else names[0]] if names else None):
        n = len(b) if isinstance(b, pd.DataFrame) else b.num_rows
        n_rows += n
        if has_id and n:
            ids = typed_ids(b if isinstance(b, pd.DataFrame) else raw_frame(b), policy)
            assert ids is not None
            state = dups.add(state, pa.table({rid: pa.array(ids, from_pandas=True)}),
                             rows=np.arange(off + 1, off + n + 1))
    exclude = dups.finish(state)
    progress(f"validating {n_rows:,} records against {ctx.policy_path.name if ctx.policy_path else 'the policy'}")
    check_empty(n_rows, policy, source)
    columns = check_columns(names, policy)
    if columns:
        # Missing or undeclared columns stop the run: validate every row only to list every rule broken.
        from release.validate import ValidationReport as VR
        from release.validate import validate_batch

        vrep = VR(rows_read=0, violations=columns)
        for b, off in _raw_batches(raw, rows):
            rb = b if isinstance(b, pd.DataFrame) else raw_frame(b)
            vrep = merge_reports(vrep, validate_batch(rb, policy, ctx.now, np.arange(off + 1, off + len(rb) + 1),
                                                      exclude_rows=exclude)[1])
        raise_if_refused(vrep, policy, source)
    pipe = row_pipeline(plan, ctx, exclude_rows=exclude)
    result = BatchResult()
    outs = []
    batches: Iterable[tuple[Any, int]] = _raw_batches(raw, rows)
    if test_mode() and ctx.options.get("_shuffle_batches"):
        # Test hook: batches in a scrambled order must publish the same bytes (batch invariance).
        import hashlib

        batches = sorted(batches, key=lambda t: hashlib.sha256(str(t[1]).encode()).digest())
    for b, off in batches:
        out, res = pipe.process(b, row_offset=off)
        if sink is None:
            outs.append(out)
        else:
            sink(out)  # streamed records or accumulated aggregates: no frame is built
        result = result.merge(res)
    vreport = result.validation
    assert vreport is not None
    raise_if_refused(vreport, policy, source)
    record_pipeline_steps(pipe, result, plan, ctx, progress, "in batches")
    if sink is not None:
        outs = []  # the frame the driver-side code gets is empty: every output was streamed or accumulated
    table = pa.Table.from_batches(outs, schema=pipe.output_schema())
    del outs
    _ProcessCache.contexts.clear()  # the pipeline is done: let go of the run's context
    return to_frame(table), vreport


def _policy_text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: the policy is not UTF-8 text (byte {e.start})") from None


def _finish(policy: Policy, policy_bytes: bytes, plan: Plan, ctx: StepContext,
            frame: pd.DataFrame | list[pd.DataFrame | None] | None, vreport: ValidationReport, out_dir: Path,
            internal_dir: Path, signer: Any, progress: Progress, t0: float,
            streams: dict[str, Any] | None = None, staging: Staging | None = None) -> RunResult:
    """Build, write, assess, sign and rename the bundle. `frame` may come in a one-element list, which
    is emptied once the outputs are built: the caller then holds no reference and the frame is freed."""
    if staging is None:
        # Another runner (release/spark) calls in here: the staging folder is this call's.
        staging = Staging(out_dir, policy.dataset.name, ctx.release_id)
        try:
            return _finish(policy, policy_bytes, plan, ctx, frame, vreport, out_dir, internal_dir, signer, progress,
                           t0, streams, staging)
        finally:
            staging.discard()
    from release.batches import to_frame
    from release.io.bundle import CSV_CHUNK_ROWS
    from release.io.stream import PublishedFiles, TableWriter, write_frame

    streams = streams or {}
    frames = frame if isinstance(frame, list) else [frame]
    del frame
    # Published files are written into the staging folder as they are built (never held as bytes).
    files = PublishedFiles()
    outputs_report: list[dict[str, Any]] = []
    findings: list[Finding] = []
    resources: list[dict[str, Any]] = []
    internal: dict[str, Any] = {"outputs": {}}
    staging_stems: dict[str, list[str]] = {}
    # Outputs that post-process earlier outputs' published tables (e.g. indices) read them here.
    ctx.options["_published"] = files
    for out in policy.outputs:
        progress(f"output {out.name} ({out.kind})")
        sorter = streams.get(out.name)
        if sorter is not None:
            # Records in canonical order from the external sort's merge, chunk by chunk into the files.
            geo = out.geo_columns(ctx.schema)
            build = OutputBuild(tables={out.name: pd.DataFrame()}, geo=geo)
            w = TableWriter(staging.folder(), out.name, geo)
            for t in sorter.merged(CSV_CHUNK_ROWS):
                w.add(to_frame(t))
            if w.rows == 0:
                w.add(to_frame(sorter.schema.empty_table()))
            sorter.close()
            build.evidence = out.evidence(w.rows)
            written = {out.name: w.close()}
        else:
            # Another runner (release/spark) may hand over an output's build from its own aggregate (built
            # here, in order, after the budget hooks: noise is still drawn only now).
            pre = ctx.options.get("_prebuilt", {}).get(out.name)
            build = pre() if pre is not None else out.build(frames[0], ctx)
            written = {stem: write_frame(staging.folder(), stem, table, build.geo)
                       for stem, table in build.tables.items()}
        paths = published_files(out, build)
        for stem, got in written.items():
            for fmt_, staged in got.items():
                files[paths[stem][fmt_]] = staged
            resources.append(resource_of(out.name, stem, files, ctx.schema))
        files.update(build.extra_files)
        staging_stems[out.name] = list(build.tables)
        internal["outputs"][out.name] = build.internal
        outputs_report.append({"name": out.name, "kind": out.kind,
                               "files": sorted(p for d in paths.values() for p in d.values()) + sorted(build.extra_files),
                               "evidence": build.evidence})
        del build, written
    frames.clear()  # every output is built: let go of the frame before the assessment's read-back
    progress("assessing the outputs from the published files")
    for out, rep in zip(policy.outputs, outputs_report, strict=True):
        stems = staging_stems[out.name]
        # Assess what the public will read: the CSV as written, parsed back, not the frames in memory.
        tables = {s: _read_published(files, f"{s}.csv", ctx.schema) for s in stems}
        actx = AssessContext(policy=policy, output_name=out.name, files={s: f"{s}.csv" for s in stems},
                             options=ctx.options, run=ctx)
        rep["figures"] = assess_output(out, tables, actx)
        for s in stems:
            actx.findings.extend(direct_identifier_findings(policy, out.name, list(tables[s].columns),
                                                            f"{s}.csv", ctx.schema))
        rep["findings"] = [f.to_json() for f in actx.findings]
        findings.extend(actx.findings)
        del tables
    verdict = "pass" if all(f.ok for f in findings) else "blocked"
    approval = ctx.manifest.get("approval") or {"required": False}
    report: dict[str, Any] = {
        "dataset": policy.dataset.name,
        "title": policy.dataset.title,
        "release_id": ctx.release_id,
        "created_utc": ctx.now.isoformat(timespec="seconds"),
        "verdict": verdict,
        "test_mode": test_mode(),
        "findings": [f.to_json() for f in findings],
        "validation": vreport.to_json(),
        "steps": ctx.step_evidence,
        "outputs": outputs_report,
        "gate": plan.gate,
        "budget": ctx.manifest.get("budget"),
        "approval": report_approval(approval),
        # Re-releases (release/series): the source, masks, predecessors used and joint checks, when declared.
        **({"series": ctx.manifest["series"]} if ctx.manifest.get("series") else {}),
    }
    if verdict == "blocked":
        failed = [f for f in findings if not f.ok]
        err = BlockedError(f"release of {policy.dataset.name} blocked by the gate: {len(failed)} finding(s) failed;"
                           " nothing was published",
                           details=[f"{f.output or '-'}: [{f.check}] {f.message}" for f in failed])
        err.report = report  # type: ignore[attr-defined]
        raise err
    files["policy.yaml"] = policy_bytes
    files["datapackage.json"] = canonical_json(datapackage(policy, resources))
    files["report.json"] = canonical_json(report)
    for render in registry.RENDERERS:
        # Sorted, as `release check` hands them over when it renders the page again to compare.
        files.update(render(report, files.sorted(), ctx))
    trusted = ctx.options.get("_trusted")
    manifest = {
        "release_id": ctx.release_id,
        "dataset": policy.dataset.name,
        "created_utc": ctx.now.isoformat(timespec="seconds"),
        "policy_sha256": sha256_bytes(policy_bytes),
        "input_sha256": trusted.subjects["input"].sha256 if trusted is not None else None,
        "schema_sha256": schema_sha256(policy),
        "subjects": trusted.manifest(exclude=("input",)) if trusted is not None else [],
        "approver": approval.get("approver"),
        "engine": "release-engine",
        "versions": versions(),
        "test_mode": test_mode(),
        "signing": {"key_id": signer.key_id, "mode": "test" if signer.test else "production"},
        "features": _features(ctx),
        "outputs": [_output_manifest(out, rep) for out, rep in zip(policy.outputs, outputs_report, strict=True)],
        **{k: v for k, v in ctx.manifest.items() if k != "approval"},
        "approval": manifest_approval(approval),
    }
    # Everything that can fail happens before the rename: after it, the run has published and exits 0.
    progress(f"writing internal diagnostics to {internal_dir}")
    _write_internal(internal_dir, policy.dataset.name, ctx, internal, report, files)
    progress(f"writing bundle ({len(files)} files)")
    bundle = write_bundle(out_dir, policy.dataset.name, ctx.release_id, files, manifest, sign=signer.sign)
    for hook in registry.POST_BUNDLE:
        try:
            hook(policy, ctx, bundle)
        except Exception as e:  # noqa: BLE001 - the bundle is published; a late hook must not turn that into a failure
            progress(f"warning: after publishing, {getattr(hook, '__name__', 'a hook')} failed: {type(e).__name__}")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return RunResult(report=report, bundle=bundle, findings=findings)


_REPORT_APPROVAL = ("required", "approver", "key_id", "key_name", "signed_utc", "policy_sha256")


def report_approval(approval: dict[str, Any]) -> dict[str, Any]:
    """What report.json (and the first screen of report.html) says about the approval."""
    return {k: v for k, v in approval.items() if k in _REPORT_APPROVAL}


def manifest_approval(approval: dict[str, Any]) -> dict[str, Any]:
    """The manifest keeps the signed approval envelope itself, so a verifier re-checks it with its own keyring."""
    return {k: v for k, v in approval.items() if k in (*_REPORT_APPROVAL, "envelope")}


def schema_sha256(policy: Policy) -> str:
    """Hash of the declared input schema (canonical JSON), so schema drift between releases is visible."""
    import json

    doc = policy.input.model_dump(mode="json", by_alias=True)
    return sha256_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def _features(ctx: StepContext) -> dict[str, Any]:
    approval = ctx.manifest.get("approval") or {}
    return {"opendp": list((ctx.manifest.get("opendp") or {}).get("features") or []),
            "approval_required": bool(approval.get("required")), "test_mode": test_mode(),
            "plugins": list(registry.PLUGINS)}


def _output_manifest(out: Any, rep: dict[str, Any]) -> dict[str, Any]:
    """Per output: its kind, the protection mechanism(s) the report shows, and the DP budget it spends."""
    fig = rep.get("figures") or {}
    mech = []
    if isinstance(fig.get("dp"), dict):
        mech.append(str(fig["dp"].get("mechanism", "differential privacy")))
    if isinstance(fig.get("suppression"), dict):
        mech.append("cell suppression (primary and secondary)")
    if isinstance(fig.get("anonymity"), dict):
        mech.append(f"k-anonymity (k={fig['anonymity'].get('k')})")
    if isinstance(fig.get("location"), dict) and fig["location"].get("method"):
        mech.append(f"geomask {fig['location']['method']}")
    return {"name": out.name, "kind": out.kind, "mechanism": mech or ["record selection and generalization"],
            "budget": out.budget()}


def read_published_csv_bytes(data: bytes, schema: Schema) -> pd.DataFrame:
    import io

    return read_published_csv(io.BytesIO(data), schema)  # type: ignore[arg-type]


def _read_published(files: Any, rel: str, schema: Schema) -> pd.DataFrame:
    """A published CSV read back typed: from its staged file in blocks, or from bytes."""
    staged = files.staged(rel) if hasattr(files, "staged") else None
    if staged is not None:
        return read_published_csv(staged.path, schema)
    return read_published_csv_bytes(files[rel], schema)


def _write_internal(folder: Path, dataset: str, ctx: StepContext, internal: dict[str, Any],
                    report: dict[str, Any], files: Any) -> None:
    """Internal diagnostics (and the PRE_PUBLISH writers, e.g. the internal report) go outside the publication folder."""
    internal = {**internal, **ctx.internal}
    d = folder / dataset
    try:
        d.mkdir(parents=True, exist_ok=True)
        if any(internal.values()):
            (d / f"{ctx.release_id}.json").write_bytes(canonical_json(internal))
        for hook in registry.PRE_PUBLISH:
            hook(ctx.policy, ctx, report, files, d, internal)
    except OSError as e:
        raise UsageError(f"cannot write internal diagnostics under {d}: {e.strerror or e}; nothing was published"
                         ) from None


def resource_of(output: str, stem: str, files: Any, schema: Schema) -> dict[str, Any]:
    """A datapackage resource for one published table, from its Parquet file's types (run and check alike)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from release.io.stream import file_sha256

    staged = files.staged(f"{stem}.parquet") if hasattr(files, "staged") else None
    arrow = pq.read_schema(str(staged.path) if staged is not None else pa.BufferReader(files[f"{stem}.parquet"]))
    fields = []
    for name, typ in zip(arrow.names, arrow.types, strict=True):
        if pa.types.is_integer(typ):
            t = "integer"
        elif pa.types.is_floating(typ):
            t = "number"
        elif pa.types.is_boolean(typ):
            t = "boolean"
        else:
            # Dates and times are published as text in the CSV (generalized or ISO 8601 without zone).
            t = "string"
        f: dict[str, Any] = {"name": str(name), "type": t}
        spec = schema.get(name)
        if spec is not None and spec.description:
            f["description"] = spec.description
        fields.append(f)
    csv_path = f"{stem}.csv"
    return {"name": slug(stem), "path": csv_path, "profile": "tabular-data-resource",
            "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
            "hash": "sha256:" + file_sha256(files, csv_path),
            "output": output, "schema": {"fields": fields}}


def slug(name: str) -> str:
    """A Frictionless resource name: lower-case letters, digits, '-', '_' and '.'."""
    import re

    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")
    return s or "resource"


def datapackage(policy: Policy, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """datapackage.json, normalised by frictionless (so check can regenerate and compare it byte for byte)."""
    from frictionless import Package

    doc = {"profile": "tabular-data-package", "name": slug(policy.dataset.name), "title": policy.dataset.title,
           "description": policy.dataset.description, "licenses": [{"name": policy.dataset.license}],
           "sources": [{"title": policy.dataset.publisher}],
           "resources": [{k: v for k, v in r.items() if k != "output"} | {"output": r["output"]} for r in resources]}
    out: dict[str, Any] = Package.from_descriptor(doc).to_descriptor()
    return out


def plan_policy(policy_path: str | Path) -> Plan:
    return compile_plan(load_policy(policy_path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `release` command")
