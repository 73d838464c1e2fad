"""Input validation: every rule, row numbers only, all failures collected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from release.errors import InputError
from release.io.readers import read_table
from release.policy.loader import parse_policy
from release.validate import validate_records
from tests.system.mini import mini_policy, mini_records


def policy(**kw: object):
    return parse_policy(yaml.safe_dump(mini_policy(**kw), sort_keys=False), "mini.yaml")


def test_clean_records_pass_and_are_typed(tmp_path) -> None:
    mini_records(20).to_csv(tmp_path / "a.csv", index=False)
    df, rep = validate_records(read_table(tmp_path / "a.csv"), policy(), datetime.now(UTC), "a.csv")
    assert rep.ok and len(df) == 20
    assert str(df["age"].dtype) == "Int64" and df["latitude"].dtype == "float64"
    assert str(df["occurred"].dtype).startswith("datetime64")


def test_zero_zero_is_not_geocoded_and_outside_is_an_error(tmp_path) -> None:
    d = mini_records(10)
    d.loc[1, ["latitude", "longitude"]] = [0.0, 0.0]
    d.loc[2, ["latitude", "longitude"]] = [45.5, -73.6]  # Montreal
    d.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(InputError) as e:
        validate_records(read_table(tmp_path / "a.csv"), policy(), datetime.now(UTC), "a.csv")
    text = e.value.render()
    assert "[outside-jurisdiction]" in text and "rows 3" in text and "rows 2" not in text


def test_all_failures_are_collected_not_just_the_first(tmp_path) -> None:
    d = mini_records(10).astype(str)
    d.loc[0, "age"] = "x"
    d.loc[1, "category"] = "Nope"
    d.loc[2, "occurred"] = "yesterday"
    d.loc[3, "age"] = "130"
    d.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(InputError) as e:
        validate_records(read_table(tmp_path / "a.csv"), policy(), datetime.now(UTC), "a.csv")
    rules = [line.split("]")[0].strip(" [") for line in e.value.details]
    assert rules == ["type", "category", "type", "range"]
    assert "Nope" not in e.value.render() and "yesterday" not in e.value.render()
