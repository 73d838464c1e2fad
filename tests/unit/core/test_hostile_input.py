"""Hostile and careless input: located errors that never quote a value; declared encodings and delimiters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from release.errors import InputError, ReleaseError
from release.io.readers import read_table
from release.policy.loader import parse_policy
from release.textsafe import safe_text
from release.validate import validate_records
from tests.system.mini import mini_policy, mini_records

SECRET = "Zelda Quibbleworth"


def policy(**input_kw: object):
    p = mini_policy()
    p["input"].update(input_kw)
    return parse_policy(yaml.safe_dump(p, sort_keys=False), "mini.yaml")


def records_csv(tmp_path: Path, n: int = 10, **kw: object) -> pd.DataFrame:
    d = mini_records(n).astype(str)
    d["victim_name"] = SECRET
    return d


def read_and_validate(path: Path, pol) -> pd.DataFrame:
    frame, _ = validate_records(read_table(path, pol.input), pol, datetime.now(UTC), str(path))
    return frame


def located(e: ReleaseError) -> str:
    text = e.render()
    assert SECRET not in text and "Quibble" not in text
    return text


# ------------------------------------------------------------------------------------ encodings

@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_declared_single_byte_encoding_is_read(tmp_path: Path, encoding: str) -> None:
    d = records_csv(tmp_path)
    d.loc[2, "division"] = "Montréal-Nord"
    (tmp_path / "a.csv").write_bytes(d.to_csv(index=False).encode(encoding.replace("-", "")))
    frame = read_and_validate(tmp_path / "a.csv", policy(encoding=encoding))
    assert frame.loc[2, "division"] == "Montréal-Nord"


def test_undecodable_bytes_are_a_located_input_error(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    d.loc[4, "division"] = "Montréal"
    (tmp_path / "a.csv").write_bytes(d.to_csv(index=False).encode("latin-1"))  # but declared UTF-8
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    text = located(e.value)
    assert "line 6" in text and "not valid utf-8" in text and "[rule: encoding]" in text


def test_undecodable_header_is_located_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("récord_id,x\n1,2\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "a.csv")
    assert "header row, byte 2: not valid utf-8" in e.value.render()


def test_huge_header_field_is_located_not_a_crash(tmp_path: Path) -> None:
    # Python's csv module stops at 131,072 characters per field (it used to sniff the header: exit 70).
    (tmp_path / "a.csv").write_text("record_id," + "h" * 200_000 + "\n1,2\n")
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    assert "hhhh" not in e.value.render()
    (tmp_path / "b.csv").write_text("record_id," + "h" * (2 << 20) + "\n1,2\n")
    with pytest.raises(InputError, match=r"header row: longer than 1,048,576 bytes"):
        read_table(tmp_path / "b.csv")


def test_utf8_bom_is_skipped(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbf" + d.to_csv(index=False).encode())
    assert list(read_and_validate(tmp_path / "a.csv", policy()).columns)[0] == "record_id"


def test_utf16_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(records_csv(tmp_path).to_csv(index=False).encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_table(tmp_path / "a.csv")


@pytest.mark.parametrize(("name", "sep"), [("tab", "\t"), ("semicolon", ";"), ("pipe", "|")])
def test_declared_delimiter(tmp_path: Path, name: str, sep: str) -> None:
    d = records_csv(tmp_path)
    d.loc[1, "division"] = "D11, north"  # a comma inside a value is no separator here
    (tmp_path / "a.csv").write_text(d.to_csv(index=False, sep=sep))
    frame = read_and_validate(tmp_path / "a.csv", policy(delimiter=name))
    assert frame.loc[1, "division"] == "D11, north" and len(frame) == 10


# ------------------------------------------------------------------------- structure and content

def test_parser_errors_print_no_row_text(tmp_path: Path) -> None:
    text = records_csv(tmp_path).to_csv(index=False)
    lines = text.splitlines()
    lines[5] = lines[5] + "," + SECRET  # one field too many on data row 5
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    t = located(e.value)
    assert "row 5" in t and "[rule: field-count]" in t


def test_nul_bytes_are_located_and_refused(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    d.loc[3, "division"] = "D1\x004"
    (tmp_path / "a.csv").write_text(d.to_csv(index=False))
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    t = located(e.value)
    assert "[nul-byte] column 'division'" in t and "rows 4" in t


def test_escape_sequences_in_values_are_refused(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    d.loc[2, "division"] = "\x1b]0;pwned\x07D11"
    (tmp_path / "a.csv").write_text(d.to_csv(index=False))
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    t = e.value.render()
    assert "[control-character] column 'division'" in t and "rows 3" in t and "\x1b" not in t


def test_over_long_field_is_located(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    d.loc[6, "division"] = "x" * 5000
    (tmp_path / "a.csv").write_text(d.to_csv(index=False))
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy(max_field_length=1000))
    t = e.value.render()
    assert "[field-length] column 'division'" in t and "rows 7" in t and "xxxx" not in t


def test_field_longer_than_a_parser_block_is_located(tmp_path: Path) -> None:
    d = records_csv(tmp_path)
    d.loc[2, "division"] = "y" * (3 << 20)  # beyond the reader's block for a 64 KB field limit
    (tmp_path / "a.csv").write_text(d.to_csv(index=False))
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy(max_field_length=1000))
    t = e.value.render()
    assert ("row 3" in t or "rows 3" in t) and "longer than 1,000 characters" in t and "yyyy" not in t


@pytest.mark.parametrize("year", [1, 9999])
def test_out_of_range_parquet_timestamps_are_located(tmp_path: Path, year: int) -> None:
    d = mini_records(5)
    ts = pa.array([datetime(2024, 1, 1)] * 4 + [datetime(year, 6, 1)], type=pa.timestamp("us"))
    t = pa.Table.from_pandas(d.drop(columns=["occurred"]), preserve_index=False).append_column("occurred", ts)
    pq.write_table(t, tmp_path / "a.parquet")
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "a.parquet")
    text = e.value.render()
    assert "column 'occurred'" in text and "rows 5" in text and "[rule: timestamp-range]" in text
    micros = str(int((datetime(year, 6, 1) - datetime(1970, 1, 1)).total_seconds() * 1_000_000))
    assert f"{year:04d}-06-01" not in text and micros[:8] not in text


def test_header_only_csv_is_an_error_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(",".join(mini_records(1).columns) + "\n")
    with pytest.raises(InputError, match=r"empty-input"):
        read_and_validate(tmp_path / "a.csv", policy())
    assert len(read_and_validate(tmp_path / "a.csv", policy(allow_empty=True))) == 0


def test_zero_row_parquet_is_an_error(tmp_path: Path) -> None:
    mini_records(3).iloc[:0].to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"no record"):
        read_and_validate(tmp_path / "a.parquet", policy())


def test_undeclared_header_names_are_not_echoed(tmp_path: Path) -> None:
    # A file whose first row is data: the "column names" are values and must not be printed.
    d = records_csv(tmp_path)
    (tmp_path / "a.csv").write_text(d.to_csv(index=False, header=False))
    with pytest.raises(InputError) as e:
        read_and_validate(tmp_path / "a.csv", policy())
    t = located(e.value)
    assert "[unexpected-column] column '#1'" in t and "R000000" not in t


# ------------------------------------------------------------------------------------ terminal

def test_safe_text_strips_escapes_controls_bidi_and_newlines() -> None:
    hostile = "a\x1b]0;owned\x07b\x1b[31mc\u202ed\x00e\x85f\n::warning::x\r\ny"
    out = safe_text(hostile)
    assert out == "abcdef ⏎ ::warning::x ⏎ y"
    assert "\n" not in out and "\x1b" not in out and "\u202e" not in out


def test_error_render_is_cleaned() -> None:
    e = InputError("file \x1b]2;title\x07x.csv: bad", details=["column 'a\nb\u202e'"])
    text = e.render()
    assert "\x1b" not in text and "\u202e" not in text and text.count("\n") == 1
