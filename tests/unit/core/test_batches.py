"""The batch interface: keyed per-row functions, accumulators that merge, a picklable row pipeline."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from release.batches import (
    BatchContext,
    BatchResult,
    DuplicateIds,
    FrequencyTable,
    GroupCounts,
    iter_batches,
    keyed_u64,
    row_pipeline,
    row_scores,
    run_key,
)
from release.dp.bounding import bound_contributions, bounding_key
from release.plan import compile_plan
from release.policy.loader import parse_policy


def test_siphash_matches_the_reference_vector() -> None:
    # SipHash-2-4 paper, Appendix A: key 00..0f, message 00..07 -> 0x93f5f5799a932462.
    msg = np.array([int.from_bytes(bytes(range(8)), "little")], dtype=np.uint64)
    assert int(keyed_u64(msg, bytes(range(16)))[0]) == 0x93F5F5799A932462


def test_row_scores_are_keyed_and_value_based() -> None:
    f = pd.DataFrame({"a": ["x", "y", "x", "x"], "b": [1, 2, 1, None]})
    k1, k2 = b"k" * 32, b"j" * 32
    s = row_scores(f, k1, "t")
    # Identical rows score equally (they publish the same values); a null is not another column's value.
    assert s[0] == s[2] and len(set(s.tolist())) == 3
    assert not np.array_equal(s, row_scores(f, k2, "t")) and not np.array_equal(s, row_scores(f, k1, "u"))
    # A row scores the same wherever it sits: reorder the frame, the scores move with the rows.
    r = row_scores(f.iloc[[1, 0]].reset_index(drop=True), k1, "t")
    assert r[0] == s[1] and r[1] == s[0]
    # The column order is canonical (sorted names) unless given; given, it matters.
    assert np.array_equal(row_scores(f[["b", "a"]], k1, "t"), s)
    assert not np.array_equal(row_scores(f, k1, "t", ["b", "a"]), s)
    # The nulls' positions enter the score: a null in a, not b, differs from a null in b, not a.
    g = pd.DataFrame({"a": pd.array([None, "1"], dtype="string"), "b": pd.array(["1", None], dtype="string")})
    ga = row_scores(g, k1, "t")
    assert ga[0] != ga[1]


def test_xxh64_matches_the_reference_vectors() -> None:
    # XXH64 with seed 0 (xxHash's reference values): empty, one byte, a 4-byte tail, a 32-byte stripe + tails.
    from release.dp.rowhash import hash_bytes

    want = {b"": 0xEF46DB3751D8E999, b"a": 0xD24EC4F1A98C6E5B, b"abc": 0x44BC2CF5AD770999,
            b"Nobody inspects the spammish repetition": 0xFBCEA83C8A378BF1}
    msgs = list(want)
    data = np.frombuffer(b"".join(msgs), dtype=np.uint8)
    lengths = np.array([len(m) for m in msgs])
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    got = hash_bytes(data, starts, lengths, np.uint64(0))
    assert [int(x) for x in got] == list(want.values())


def test_run_key_is_fixed_in_test_mode() -> None:
    assert run_key(3) == run_key(3) and run_key(3) != run_key(4)


rows = st.lists(st.tuples(st.integers(0, 5), st.sampled_from("abc")), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(rows, st.integers(1, 4), st.one_of(st.none(), st.integers(1, 2)), st.randoms(use_true_random=False))
def test_bounding_keeps_the_same_rows_in_any_order(r: list[tuple[int, str]], m: int, g: int | None, rnd) -> None:  # type: ignore[no-untyped-def]
    f = pd.DataFrame({"rid": [f"r{i}" for i in range(len(r))], "pid": [f"p{u}" for u, _ in r],
                      "cell": [c for _, c in r]})
    key = bounding_key(b"x" * 32)
    keep, _ = bound_contributions(f, "pid", "rid", ["cell"], m, g, key)
    perm = list(range(len(f)))
    rnd.shuffle(perm)
    shuffled = f.iloc[perm].reset_index(drop=True)
    keep2, _ = bound_contributions(shuffled, "pid", "rid", ["cell"], m, g, key)
    assert set(f.loc[keep, "rid"]) == set(shuffled.loc[keep2, "rid"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from("abc"), st.sampled_from(["x", "y", None])),
                min_size=1, max_size=60), st.integers(1, 4), st.one_of(st.none(), st.integers(1, 2)),
       st.integers(1, 17))
def test_bounding_on_a_pruned_frame_with_batch_digests_keeps_the_whole_frames_rows(
        r: list[tuple[int, str, str | None]], m: int, g: int | None, size: int) -> None:
    # The engine's pruned path: the digest of every column taken per batch, the other columns let go.
    f = pd.DataFrame({"pid": [f"p{u}" for u, _, _ in r], "cell": [c for _, c, _ in r],
                      "other": pd.array([o for _, _, o in r], dtype=pd.StringDtype("pyarrow"))})
    key = bounding_key(b"x" * 32)
    want, want_stats = bound_contributions(f, "pid", None, ["cell"], m, g, key)
    digests = np.concatenate([key.row_scores(f.iloc[i:i + size]) for i in range(0, len(f), size)])
    got, stats = bound_contributions(f[["pid", "cell"]], "pid", None, ["cell"], m, g, key,
                                     digests=digests.view(np.uint64))
    assert np.array_equal(want, got) and want_stats == stats
    # Per batch, from the Arrow batch or its frame: the whole frame's scores.
    assert np.array_equal(digests, key.row_scores(f))
    assert np.array_equal(key.row_scores(pa.Table.from_pandas(f, preserve_index=False)), key.row_scores(f))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", None]), st.integers(0, 3)), max_size=50), st.integers(1, 9))
def test_group_counts_merge_to_the_one_batch_counts(vals: list[tuple[str | None, int]], size: int) -> None:
    t = pa.table({"g": pa.array([v for v, _ in vals], pa.string()), "h": pa.array([h for _, h in vals], pa.int64())})
    acc = GroupCounts(("g", "h"))
    parts = [acc.add(acc.create(), b) for b in iter_batches(t, size)]
    state = acc.create()
    for p in reversed(parts):  # merged in any order
        state = acc.merge(state, p)
    got = acc.finish(state)
    want = pd.DataFrame({"g": [v for v, _ in vals], "h": [h for _, h in vals]}).value_counts(dropna=False)
    assert int(got["count"].sum()) == len(vals)
    assert {(None if pd.isna(a) else a, int(b)): int(c) for a, b, c in got.itertuples(index=False)} == \
        {(None if pd.isna(a) else a, int(b)): int(c) for (a, b), c in want.items()}
    ft = FrequencyTable(("g",), ("h",))
    assert ft.finish(ft.add(ft.create(), t)).equals(got)


def test_duplicate_ids_span_batches() -> None:
    acc = DuplicateIds("id")
    s = acc.add(acc.create(), pa.table({"id": ["a", "b"]}), rows=np.array([1, 2]))
    s = acc.merge(s, acc.add(acc.create(), pa.table({"id": ["c", "a"]}), rows=np.array([3, 4])))
    assert acc.finish(s).tolist() == [1, 4]


POLICY = """
version: 1
dataset: {name: t, title: T, publisher: p}
jurisdiction: {bbox: [-80, 43, -79, 44], crs: 2952}
input:
  record_id: id
  columns:
    id: {type: string, role: record-id}
    when: {type: datetime, role: time}
    kind: {type: category, categories: [A, B]}
    name: {type: string, role: direct-identifier}
steps:
  - {type: filter, exclude: {column: kind, equals: B}}
  - {type: drop, roles: [direct-identifier]}
  - {type: generalize, column: when, time: month}
outputs:
  - {name: r, kind: records, columns: [when, kind]}
"""


def _pipeline():  # type: ignore[no-untyped-def]
    policy = parse_policy(POLICY, "t.yaml")
    plan = compile_plan(policy)
    bctx = BatchContext(policy, None, "rid", datetime(2025, 1, 1, tzinfo=UTC), run_key(1))
    return row_pipeline(plan, bctx)


def test_pipeline_is_picklable_and_batch_invariant() -> None:
    pipe = pickle.loads(pickle.dumps(_pipeline()))
    n = 40
    raw = pa.table({"id": [f"i{i}" for i in range(n)], "when": [f"2024-0{1 + i % 9}-0{1 + i % 7}T10:00" for i in range(n)],
                    "kind": ["A" if i % 3 else "B" for i in range(n)], "name": ["x"] * n})
    assert pipe.output_schema(raw.schema).names == ["id", "when", "kind"]
    one, res1 = pipe.process(raw.to_batches()[0])
    parts = [pipe.process(b, row_offset=i * 7) for i, b in enumerate(iter_batches(raw, 7))]
    merged = BatchResult()
    for _, r in reversed(parts):
        merged = merged.merge(r)
    many = pa.Table.from_batches([b for b, _ in parts]).to_pandas().sort_values("id").reset_index(drop=True)
    assert one.to_pandas().sort_values("id").reset_index(drop=True).equals(many)
    assert res1.step_evidence() == merged.step_evidence()
    assert merged.step_evidence()[0]["rows_excluded"] == sum(1 for i in range(n) if i % 3 == 0)
    assert merged.step_evidence()[2]["distinct_after"] == 6  # months 2, 3, 5, 6, 8, 9 (i % 3 != 0)


def test_pipeline_validation_names_input_rows_across_batches() -> None:
    pipe = _pipeline()
    raw = pa.table({"id": ["a", "b", "c", "d"], "when": ["2024-01-01", "bad", "2024-01-01", "worse"],
                    "kind": ["A"] * 4, "name": ["x"] * 4})
    merged = BatchResult()
    for i, b in enumerate(iter_batches(raw, 2)):
        merged = merged.merge(pipe.process(b, row_offset=2 * i)[1])
    assert merged.validation is not None
    v = merged.validation.to_json()["violations"]
    assert [(x["rule"], x["rows"], x["count"]) for x in v] == [("type", [2, 4], 2)]
