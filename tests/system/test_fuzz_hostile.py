"""Fuzzing the CLI in-process: mutated CSV bytes and mutated policies never crash and never echo a value.

The input carries unique canary tokens in its identifying columns; whatever the mutation (truncation,
insertion, deletion, encoding swap, broken quotes), the run must end with exit 0, 1 or 2, print no
traceback, and no canary may reach stdout or stderr. Policies are mutated structurally (keys removed,
values replaced, unknown keys, wrong types) and as text, and go through `release plan` and `run`.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.cli import main
from tests.system.mini import mini_policy, mini_records

CANARY = "QZX" + secrets.token_hex(3).upper()
N_ROWS = 6


def _base_csv() -> bytes:
    d = mini_records(N_ROWS).astype(str)
    # Every published division names a contact: the gate blocks most runs (exit 1) after the whole
    # pipeline ran but before the bundle is written, which keeps most examples cheap.
    d["division"] = [f"D1{i % 3} desk: ops@example.org" for i in range(N_ROWS)]
    d["record_id"] = [f"{CANARY}R{i}" for i in range(N_ROWS)]
    d["victim_name"] = [f"{CANARY}N{i} Montréal" for i in range(N_ROWS)]
    d["person_id"] = [f"{CANARY}P{i}" for i in range(N_ROWS)]
    return d.to_csv(index=False).encode()


BASE_CSV = _base_csv()
_POLICY = mini_policy(steps=[{"type": "drop", "roles": ["direct-identifier"]},
                             {"type": "pseudonymize", "columns": ["person_id"], "method": "random"}],
                      outputs=[{"name": "records", "kind": "records", "columns": ["occurred", "category", "division"]}])
_POLICY["input"]["on_invalid"] = "exclude"
_POLICY["input"]["allow_empty"] = True
BASE_POLICY = yaml.safe_dump(_POLICY, sort_keys=False)
_PUBLISHING = copy.deepcopy(_POLICY)
_PUBLISHING["gate"] = {"identifier_scan_waivers": {"division": ["email"]}}
PUBLISHING_POLICY = yaml.safe_dump(_PUBLISHING, sort_keys=False)
"The same policy with the contact column waived: runs publish a bundle (the expensive path)."
BYTES = st.sampled_from([b"\x00", b"\xff", b"\xe9", b'"', b",", b"\n", b"\r", b"\x1b]0;t\x07", b"=cmd|",
                         b"\xef\xbb\xbf", b"\t", b"'", b"9" * 70, b"\xc3"])


@st.composite
def mutated_csv(draw: st.DrawFn) -> bytes:
    data = BASE_CSV
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "insert", "delete", "encode", "quote", "dup-line"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            data = data[:pos]
        elif op == "insert":
            data = data[:pos] + draw(BYTES) + data[pos:]
        elif op == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 40)):]
        elif op == "encode":
            enc = draw(st.sampled_from(["latin-1", "utf-16", "cp1252", "utf-8-sig"]))
            data = data.decode("utf-8", errors="replace").encode(enc, errors="replace")
        elif op == "quote":
            data = data[:pos] + b'"' + data[pos:].replace(b",", b'","', 1)
        else:
            lines = data.split(b"\n")
            i = draw(st.integers(0, max(len(lines) - 1, 0)))
            data = b"\n".join(lines[: i + 1] + lines[i:])
    return data


def _check(res: Any) -> None:
    assert res.exit_code in (0, 1, 2), (res.exit_code, res.output[-2000:], res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    text = res.stdout + res.stderr
    assert "Traceback" not in text and "internal error" not in text
    assert CANARY not in text


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with the valid policy. Charts are drawn as empty SVGs to keep examples cheap (the
    reports are still rendered from the fuzzed data; only matplotlib's drawing is skipped)."""
    import matplotlib.pyplot as plt

    from release.report import charts

    d = tmp_path_factory.mktemp("fuzz")
    (d / "policy.yaml").write_text(BASE_POLICY)
    (d / "publishing.yaml").write_text(PUBLISHING_POLICY)
    real = charts.to_svg

    def no_drawing(fig: Any, label: str) -> str:
        plt.close(fig)
        return "<svg></svg>"

    charts.to_svg = no_drawing  # type: ignore[assignment]
    yield d
    charts.to_svg = real  # type: ignore[assignment]


def _run(work: Path, policy: str, data: bytes, as_json: bool) -> None:
    inp = work / "in.csv"
    inp.write_bytes(data)
    args = ["run", str(work / policy), "--input", str(inp), "--out", str(work / "out"), "--seed", "1", "-q"]
    _check(CliRunner().invoke(main, args + (["--json"] if as_json else [])))


@settings(max_examples=1100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated_csv(), as_json=st.booleans())
def test_mutated_csv_never_crashes_or_leaks(work: Path, data: bytes, as_json: bool) -> None:
    _run(work, "policy.yaml", data, as_json)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated_csv(), as_json=st.booleans())
def test_mutated_csv_through_a_published_bundle(work: Path, data: bytes, as_json: bool) -> None:
    _run(work, "publishing.yaml", data, as_json)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@st.composite
def mutated_policy(draw: st.DrawFn) -> str:
    pol = copy.deepcopy(_POLICY)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(pol)
        path = draw(st.sampled_from(paths))
        parent = pol
        for p in path[:-1]:
            parent = parent[p]
        op = draw(st.sampled_from(["delete", "replace", "unknown-key"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(VALUES)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(VALUES)
    text = yaml.safe_dump(pol, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "\t", ": [", "&a x", "*a", "!!python/object:os.system", "{"]))
    return text


@settings(max_examples=900, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=mutated_policy(), run=st.integers(0, 19))
def test_mutated_policy_never_crashes(work: Path, text: str, run: int) -> None:
    p = work / "mutated.yaml"
    p.write_bytes(text.encode("utf-8", errors="replace"))
    _check(CliRunner().invoke(main, ["plan", str(p), "--json"]))
    if run == 0:  # one in twenty also runs on the valid input: the plan is not the only reader of a policy
        (work / "ok.csv").write_bytes(BASE_CSV)
        _check(CliRunner().invoke(main, ["run", str(p), "--input", str(work / "ok.csv"),
                                         "--out", str(work / "out-p"), "--seed", "1", "-q"]))
