"""Formula neutralisation of published CSV cells: OWASP's apostrophe, reversible, numbers untouched."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from release.io.bundle import read_published_csv, table_to_csv, table_to_parquet
from release.outputs.cells import neutralise_cell, neutralised_equal, restore_cell

# (A carriage return is refused at validation, so it never reaches a published cell.)
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTab", "'=already"]


def test_triggering_string_cells_get_an_apostrophe_in_csv_only() -> None:
    frame = pd.DataFrame({"text": pd.Series(HOSTILE + ["plain"], dtype="string"),
                          "n": [-5, -1, 0, 3, -2, 7, -9]})
    text = table_to_csv(frame).decode()
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert list(back["text"]) == ["'" + v for v in HOSTILE] + ["plain"]
    assert list(back["n"]) == ["-5", "-1", "0", "3", "-2", "7", "-9"]  # numbers are not formulas
    # Parquet keeps the value; reading the CSV back restores it, so the formats agree.
    assert list(pq.read_table(io.BytesIO(table_to_parquet(frame)))["text"].to_pylist()) == HOSTILE + ["plain"]
    assert list(read_published_csv(io.StringIO(text), {})["text"]) == HOSTILE + ["plain"]  # type: ignore[arg-type]


@given(st.text())
def test_neutralisation_is_a_bijection(value: str) -> None:
    n = neutralise_cell(value)
    assert restore_cell(n) == value
    assert neutralised_equal(n, value)
    assert not n or n[0] not in "=+-@\t\r"  # never a live formula


def test_object_columns_keep_their_numbers() -> None:
    frame = pd.DataFrame({"mixed": pd.Series([-3, "=1+1", "x", None], dtype=object)})
    back = pd.read_csv(io.StringIO(table_to_csv(frame).decode()), dtype=str, keep_default_na=False)
    assert list(back["mixed"]) == ["-3", "'=1+1", "x", ""]
