"""PostgreSQL source without a server: credentials never echoed, the input hash independent of row order."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from release.errors import UsageError
from release.io.postgres import Connection, is_database_url, parse_url, quote_relation, rows_sha256
from release.policy.base import ColumnType

SECRET = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "P"), exclude_characters="*'\\"),
                 min_size=4, max_size=24)


@settings(max_examples=60, deadline=None)
@given(password=SECRET, user=st.from_regex(r"[a-z][a-z0-9_]{3,15}", fullmatch=True),
       before=st.text(max_size=40), after=st.text(max_size=40))
def test_scrub_removes_password_and_login_from_any_message(password: str, user: str, before: str, after: str) -> None:
    c = Connection(host="db.internal", port=5432, dbname="records", user=user, password=password)
    msg = (f"{before} FATAL: password authentication failed for user \"{user}\" {password} "
           f"postgresql://{user}:{password}@db.internal/records password={password} {after}")
    out = c.scrub(msg)
    assert password not in out.replace(before, "").replace(after, "")
    assert f'user "{user}"' not in out and f"{user}@" not in out


@settings(max_examples=40, deadline=None)
@given(password=SECRET)
def test_a_password_in_the_url_is_refused_and_never_echoed(password: str) -> None:
    from urllib.parse import quote

    def render(pw: str) -> str:
        with pytest.raises(UsageError) as e:
            parse_url(f"postgresql://reader:{quote(pw, safe='')}@db.internal:5432/records", "--input")
        return e.value.render()

    # A password that is a word of the fixed message ("pass" in "password") proves nothing either way.
    fixed = render("0")
    assume(password not in fixed and quote(password, safe="") not in fixed)
    out = render(password)
    assert password not in out and quote(password, safe="") not in out


def test_urls_and_relations() -> None:
    assert parse_url("postgresql://db.internal:6543/records", "x") == ("db.internal", 6543, "records", None)
    assert parse_url("postgres://ro@db/records", "x") == ("db", 5432, "records", "ro")
    assert is_database_url("postgresql://h/d") and not is_database_url("records.parquet")
    assert quote_relation("public.Crimes") == '"public"."Crimes"'
    for bad in ("a.b.c", 'x"; DROP TABLE t; --', ""):
        with pytest.raises(UsageError):
            quote_relation(bad)
    c = Connection(host="h", port=1, dbname="d", user="u", password="p'w\\x")
    assert "password='p\\'w\\\\x'" in c.conninfo() and "p'w" not in repr(c)


ROWS = st.lists(st.tuples(st.integers(0, 10**6), st.one_of(st.none(), st.text(max_size=8)),
                          st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=30, unique_by=lambda r: r[0])


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, seed=st.randoms(use_true_random=False))
def test_input_hash_is_the_same_for_any_row_order_and_changes_with_a_value(rows: list, seed) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.compute as pc

    def table(rs: list) -> pa.Table:
        return pa.table({"id": [f"R{r[0]:07d}" for r in rs], "txt": [r[1] for r in rs], "x": [r[2] for r in rs]})

    def h(t: pa.Table) -> str:
        t = t.take(pc.sort_indices(t, sort_keys=[("id", "ascending")]))
        return rows_sha256(t, ["id", "txt", "x"])[0]

    shuffled = list(rows)
    seed.shuffle(shuffled)
    assert h(table(rows)) == h(table(shuffled))
    changed = [(rows[0][0], ("x" if rows[0][1] != "x" else "y"), rows[0][2]), *rows[1:]]
    assert h(table(changed)) != h(table(rows))
    # A null is not the empty string.
    if rows[0][1] in (None, ""):
        other = [(rows[0][0], "" if rows[0][1] is None else None, rows[0][2]), *rows[1:]]
        assert h(table(other)) != h(table(rows))


def test_every_declared_type_accepts_some_database_type() -> None:
    from release.io.postgres import ACCEPTS

    assert set(ACCEPTS) == set(ColumnType)
    assert "text" not in ACCEPTS[ColumnType.datetime] and "timestamp" not in ACCEPTS[ColumnType.string]
