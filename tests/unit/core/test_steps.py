"""The general steps: drop, pseudonymize, generalize, filter."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from release.context import StepContext
from release.errors import InputError, UsageError
from release.policy.base import ColumnSpec, ColumnType, Role
from release.steps.drop import DropStep
from release.steps.filter import FilterStep
from release.steps.generalize import GeneralizeStep, bin_numbers, truncate_time
from release.steps.pseudonymize import PseudonymizeStep

SCHEMA = {
    "id": ColumnSpec(type=ColumnType.string, role=Role.record_id),
    "name": ColumnSpec(type=ColumnType.string, role=Role.direct_identifier),
    "phone": ColumnSpec(type=ColumnType.string, role=Role.direct_identifier),
    "offence": ColumnSpec(type=ColumnType.string, role=Role.quasi_identifier),
    "when": ColumnSpec(type=ColumnType.datetime, role=Role.time),
    "age": ColumnSpec(type=ColumnType.integer, role=Role.quasi_identifier),
}


def ctx(dataset: str = "ds", **kw: object) -> StepContext:
    from types import SimpleNamespace

    # Steps see the policy only for its dataset name (the pseudonym keys' context).
    return StepContext(policy=SimpleNamespace(dataset=SimpleNamespace(name=dataset)),  # type: ignore[arg-type]
                       policy_path=None, schema=SCHEMA, release_id="r", now=datetime.now(UTC), **kw)  # type: ignore[arg-type]


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"], "name": ["Ann", "Bo", "Cy", "Di"], "phone": ["1", "2", "3", "4"],
        "offence": ["Assault", "Robbery", "Assault", None],
        "when": pd.to_datetime(["2024-02-29 13:45", "2024-12-31 23:59", "2025-01-01 00:00", "2024-07-04 09:15"]),
        "age": pd.array([17, 34, 65, None], dtype="Int64"),
    })


def test_drop_by_role_removes_every_direct_identifier() -> None:
    out, ev = DropStep(roles=[Role.direct_identifier]).apply(frame(), ctx())
    assert "name" not in out and "phone" not in out and ev["dropped_columns"] == ["name", "phone"]
    assert set(DropStep(roles=[Role.direct_identifier]).schema_after(SCHEMA)) == {"id", "offence", "when", "age"}


def test_filter_excludes_matching_rows() -> None:
    step = FilterStep.model_validate({"type": "filter", "exclude": {"column": "offence", "in": ["Robbery"]}})
    out, ev = step.apply(frame(), ctx())
    assert list(out["id"]) == ["a", "c", "d"] and ev["rows_excluded"] == 1
    step = FilterStep.model_validate({"type": "filter", "exclude": {"column": "offence", "is_null": True}})
    assert list(step.apply(frame(), ctx())[0]["id"]) == ["a", "b", "c"]


def test_hmac_pseudonyms_are_keyed_stable_and_never_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K1", "k" * 32)
    monkeypatch.setenv("K2", "j" * 32)
    step = PseudonymizeStep(columns=("name",), method="hmac", secret_env="K1")
    a, _ = step.apply(frame(), ctx())
    b, _ = step.apply(frame(), ctx())
    other, _ = PseudonymizeStep(columns=("name",), method="hmac", secret_env="K2").apply(frame(), ctx())
    assert list(a["name"]) == list(b["name"])
    assert not set(a["name"]) & set(other["name"])
    assert not set(a["name"]) & {"Ann", "Bo", "Cy", "Di"} and a["name"].str.len().eq(16).all()
    assert a["name"].nunique() == 4


def test_random_ids_differ_between_releases_but_keep_links_within_one() -> None:
    df = frame().assign(name=["Ann", "Bo", "Ann", "Di"])
    step = PseudonymizeStep(columns=("name",), method="random")
    a, _ = step.apply(df, ctx())
    b, _ = step.apply(df, ctx())
    assert a["name"][0] == a["name"][2] and a["name"][0] != a["name"][1]
    assert not set(a["name"]) & set(b["name"])


def test_missing_or_short_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(UsageError, match="NOPE is not set"):
        PseudonymizeStep(columns=("name",), secret_env="NOPE").apply(frame(), ctx())
    monkeypatch.setenv("SHORT", "abc")
    with pytest.raises(UsageError, match="at least 16 bytes"):
        PseudonymizeStep(columns=("name",), secret_env="SHORT").apply(frame(), ctx())


@pytest.mark.parametrize("unit,first", [("hour", "2024-02-29T13:00"), ("day", "2024-02-29"), ("week", "2024-02-26"),
                                        ("month", "2024-02"), ("quarter", "2024-Q1"), ("year", "2024")])
def test_time_truncation(unit: str, first: str) -> None:
    out = truncate_time(frame()["when"], unit)
    assert out.iloc[0] == first
    assert truncate_time(frame()["when"], "quarter").iloc[1] == "2024-Q4"


def test_bins_with_top_and_bottom_coding() -> None:
    s = pd.Series([-5, 0, 17, 18, 64, 65, 200, None], dtype="Float64")
    out = bin_numbers(s, [-np.inf, 18, 65, np.inf])
    assert list(out.iloc[:7]) == ["-inf-18", "-inf-18", "-inf-18", "18-65", "18-65", "65-inf", "65-inf"]
    assert pd.isna(out.iloc[7])


def test_category_hierarchy_refuses_unmapped_values_by_default() -> None:
    step = GeneralizeStep(column="offence", mapping={"Assault": "Violent"})
    with pytest.raises(InputError, match="not in the hierarchy"):
        step.apply(frame(), ctx())
    out, _ = GeneralizeStep(column="offence", mapping={"Assault": "Violent"}, unmapped="other").apply(frame(), ctx())
    assert list(out["offence"].iloc[:3]) == ["Violent", "Other", "Violent"] and pd.isna(out["offence"].iloc[3])


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
       edges=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=6, unique=True))
def test_bins_cover_each_value_by_its_own_interval(values: list[float], edges: list[float]) -> None:
    e = sorted(edges)
    out = bin_numbers(pd.Series(values), e, [str(i) for i in range(len(e) - 1)])
    for v, lab in zip(values, out, strict=True):
        if e[0] <= v < e[-1]:
            i = int(lab)
            assert e[i] <= v < e[i + 1]
        else:
            assert pd.isna(lab)
