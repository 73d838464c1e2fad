"""Property tests: random broken policies and random malformed records end in exit 2, never a traceback or a bundle."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.cli import main
from tests.system.mini import mini_policy, mini_records

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutations() -> st.SearchStrategy[Any]:
    """Each mutation is guaranteed to make the policy invalid."""

    def unknown_key(p: dict[str, Any], where: int) -> None:
        targets = [p, p["dataset"], p["input"], p["outputs"][0], *p["steps"]]
        targets[where % len(targets)]["unexpected_" + str(where)] = 1

    def missing_key(p: dict[str, Any], where: int) -> None:
        key = ["dataset", "jurisdiction", "input", "outputs"][where % 4]
        del p[key]

    def bad_bbox(p: dict[str, Any], where: int) -> None:
        p["jurisdiction"]["bbox"] = [10, 50, -10, 40][: 2 + where % 3] if where % 2 else [10, 50, -10, 40]

    def missing_column(p: dict[str, Any], where: int) -> None:
        p["outputs"][0]["columns"] = [*p["outputs"][0]["columns"], f"nope_{where}"]

    def bad_step(p: dict[str, Any], where: int) -> None:
        p["steps"].insert(where % (len(p["steps"]) + 1),
                          [{"type": "nope"}, {"type": "generalize", "column": "age"},
                           {"type": "drop"}, {"type": "filter", "exclude": {"column": "category"}},
                           {"type": "generalize", "column": "age", "bins": [5, 1]},
                           {"type": "pseudonymize", "columns": ["person_id"], "method": "hmac"}][where % 6])

    def bad_type(p: dict[str, Any], where: int) -> None:
        p["input"]["columns"]["age"]["type"] = ["int", "number", 3, None][where % 4]

    def bad_gate(p: dict[str, Any], where: int) -> None:
        p["gate"] = {["min_k", "max_prosecutor_risk", "min_l"][where % 3]: [-1, 0, 7.5][where % 3] if where % 3 != 2 else 0}

    def bad_name(p: dict[str, Any], where: int) -> None:
        p["dataset"]["name"] = ["Has Spaces", "../escape", "", "UPPER"][where % 4]

    return st.tuples(st.sampled_from([unknown_key, missing_key, bad_bbox, missing_column, bad_step, bad_type,
                                      bad_gate, bad_name]), st.integers(0, 50))


@SETTINGS
@given(mutations=st.lists(_mutations(), min_size=1, max_size=3))
def test_random_broken_policies_exit_2(tmp_path: Path, mutations: list[Any]) -> None:
    p = mini_policy()
    for fn, where in mutations:
        try:
            fn(p, where)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation already removed what this one edits: still broken
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump(p, sort_keys=False))
    inp = tmp_path / "in.csv"
    if not inp.exists():
        mini_records(30).to_csv(inp, index=False)
    out = tmp_path / "out-broken"
    res = CliRunner().invoke(main, ["run", str(pol), "--input", str(inp), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert "p.yaml" in res.output
    assert not out.exists()


def _corrupt() -> st.SearchStrategy[Any]:
    cells = st.sampled_from([
        ("latitude", "91"), ("latitude", "-95.5"), ("longitude", "-200"), ("latitude", "abc"),
        ("age", "twelve"), ("age", "3.5"), ("age", "-4"), ("age", "500"), ("occurred", "not a date"),
        ("occurred", "2099-05-01T00:00:00"), ("category", "Arson"), ("record_id", None), ("category", None),
        ("latitude", "43.65"), ("longitude", "inf"),
    ])
    return st.tuples(cells, st.integers(0, 29))


@SETTINGS
@given(corruptions=st.lists(_corrupt(), min_size=1, max_size=6), drop=st.sampled_from([None, "age", "division"]),
       dup=st.booleans())
def test_random_malformed_records_exit_2(tmp_path: Path, corruptions: list[Any], drop: str | None, dup: bool) -> None:
    df = mini_records(30).astype(str)
    for (col, value), row in corruptions:
        df.loc[row, col] = value if value is not None else ""
    df.loc[0, "latitude"] = ""  # a half coordinate pair: every case holds at least one invalid row
    if drop:
        df = df.drop(columns=[drop])
    if dup:
        df.loc[29, "record_id"] = df.loc[28, "record_id"]
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump(copy.deepcopy(mini_policy()), sort_keys=False))
    inp = tmp_path / "bad.csv"
    df.to_csv(inp, index=False)
    out = tmp_path / "out-malformed"
    res = CliRunner().invoke(main, ["run", str(pol), "--input", str(inp), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert "rule(s) broken" in res.output
    # Raw values never appear in the message, only rules, columns and row numbers.
    for (_col, value), _ in corruptions:
        if value and value not in ("inf",) and not value.replace(".", "").replace("-", "").isdigit():
            assert value not in res.output.replace("value not readable", "")
    assert not out.exists()
