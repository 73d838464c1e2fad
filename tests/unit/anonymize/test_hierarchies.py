"""Hierarchies: labels per level, nesting checks, CSV trees, prefix masks, policy errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from release.anonymize.hierarchies import Hierarchy, encode_column
from release.errors import PolicyError


def labels(values, h, level):
    enc = encode_column(pd.Series(values), Hierarchy.model_validate(h), "c", None)
    return list(enc.labels[level][enc.maps[level][enc.codes0]])


def test_time_levels_start_at_first_unit_and_end_in_star():
    v = pd.to_datetime(pd.Series(["2024-02-03", "2024-05-30", "2023-12-31"]))
    assert labels(v, {"time": ["month", "quarter", "year"]}, 0) == ["2024-02", "2024-05", "2023-12"]
    assert labels(v, {"time": ["month", "quarter", "year"]}, 1) == ["2024-Q1", "2024-Q2", "2023-Q4"]
    assert labels(v, {"time": ["month", "quarter", "year"]}, 2) == ["2024", "2024", "2023"]
    assert labels(v, {"time": ["month", "quarter", "year"]}, 3) == ["*", "*", "*"]


def test_age_levels_exact_5_10_bands_with_top_coding():
    h = {"age": True, "bands": [0, 20, 40, 60, 80], "top": 80}
    v = [23, 37, 85]
    assert labels(v, h, 0) == ["23", "37", "85"]
    assert labels(v, h, 1) == ["20-24", "35-39", "80+"]
    assert labels(v, h, 2) == ["20-29", "30-39", "80+"]
    assert labels(v, h, 3) == ["20-39", "20-39", "80+"]


def test_numeric_widths_must_nest():
    with pytest.raises(ValidationError, match="multiple"):
        Hierarchy.model_validate({"widths": [10, 15]})
    assert labels([3, 14, 27], {"widths": [10, 20]}, 2) == ["0-19", "0-19", "20-39"]


def test_bands_cutting_10_year_intervals_are_refused_with_column_name():
    with pytest.raises(PolicyError, match="'c' does not nest"):
        encode_column(pd.Series([18, 24, 26, 33]), Hierarchy(age=True, bands=(0, 18, 25, 35, 120)), "c", None)


def test_week_may_only_be_the_last_time_level():
    with pytest.raises(ValidationError, match="week"):
        Hierarchy.model_validate({"time": ["day", "week", "month"]})


def test_tree_and_csv_hierarchies_agree(tmp_path):
    (tmp_path / "h.csv").write_text("a;x;*\nb;x;*\nc;y;*\n")
    v = ["a", "b", "c", "a"]
    assert labels(v, {"csv": str(tmp_path / "h.csv")}, 1) == labels(v, {"tree": [{"a": "x", "b": "x", "c": "y"}]}, 1)
    assert labels(v, {"tree": [{"a": "x", "b": "x", "c": "y"}]}, 2) == ["*"] * 4


def test_csv_hierarchy_with_two_parents_is_refused(tmp_path):
    (tmp_path / "h.csv").write_text("a,x\na,y\n")
    with pytest.raises(PolicyError, match="two parents"):
        encode_column(pd.Series(["a"]), Hierarchy(csv=str(tmp_path / "h.csv")), "c", None)


def test_prefix_masking_keeps_length():
    assert labels(["M5V 2T6", "M4C 1B5"], {"prefix": [3, 1]}, 1) == ["M5V****", "M4C****"]
    assert labels(["M5V 2T6", "M4C 1B5"], {"prefix": [3, 1]}, 2) == ["M******", "M******"]


def test_missing_value_is_its_own_code_until_star():
    enc = encode_column(pd.Series(["a", None, "b"]), Hierarchy(tree=({"a": "x", "b": "x"},)), "c", None)
    assert enc.labels[1][enc.maps[1][enc.codes0]].tolist() == ["x", None, "x"]
    assert enc.missing[1] >= 0 and enc.missing[-1] == -1
    assert np.unique(enc.maps[2]).tolist() == [0]
