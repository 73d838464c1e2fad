"""Pseudonym keys are derived per dataset and column (HKDF-SHA256); only a shared link_group links datasets."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from release.errors import PolicyError
from release.policy.loader import parse_policy
from release.steps.pseudonymize import PseudonymizeStep
from tests.unit.core.test_steps import ctx

IDS = pd.DataFrame({"id": [f"GO-2024{i:06d}" for i in range(50)], "name": ["x"] * 50})
SECRET = "s" * 32


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK", SECRET)


def pseud(dataset: str, column: str = "id", link_group: str | None = None) -> pd.Series:
    step = PseudonymizeStep(columns=(column,), secret_env="PK", link_group=link_group)
    return step.apply(IDS, ctx(dataset))[0][column]


def test_two_datasets_share_no_pseudonym() -> None:
    assert not set(pseud("hate-crimes")) & set(pseud("crime-indicators"))
    assert list(pseud("hate-crimes")) == list(pseud("hate-crimes"))  # stable across releases of one dataset


def test_a_shared_link_group_links_and_only_then() -> None:
    a, b = pseud("hate-crimes", link_group="occurrences"), pseud("crime-indicators", link_group="occurrences")
    assert list(a) == list(b)
    assert not set(a) & set(pseud("crime-indicators", link_group="other-group"))
    assert not set(a) & set(pseud("hate-crimes"))  # declaring a group changes the keys


def test_the_key_is_hkdf_of_the_secret_with_dataset_and_column_as_context() -> None:
    info = b"release-pseudonym\0dataset:hate-crimes\0id"
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SECRET.encode())
    want = hmac.new(key, IDS["id"][0].encode(), hashlib.sha256).hexdigest()[:16]
    assert pseud("hate-crimes")[0] == want
    # Never the raw secret as the HMAC key (the old behaviour, which linked every dataset).
    assert pseud("hate-crimes")[0] != hmac.new(SECRET.encode(), IDS["id"][0].encode(), hashlib.sha256).hexdigest()[:16]


def test_link_group_needs_hmac() -> None:
    doc = """
version: 1
dataset: {name: t, title: t}
jurisdiction: {bbox: [-80, 43, -79, 44]}
input:
  record_id: rid
  columns:
    rid: {type: string, role: record-id}
steps:
  - {type: pseudonymize, columns: [rid], method: random, link_group: g}
outputs:
  - {name: r, kind: records, columns: [rid]}
"""
    with pytest.raises(PolicyError) as e:
        parse_policy(doc, "t.yaml")
    assert "link_group needs method hmac" in e.value.render()


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=30),
       key=st.binary(min_size=16, max_size=100), length=st.integers(8, 64), prefix=st.sampled_from(["", "GO-"]),
       storage=st.sampled_from(["pyarrow", "python"]))
def test_text_pseudonyms_are_hmac_sha256_of_each_value(values: list[str | None], key: bytes, length: int,
                                                       prefix: str, storage: str) -> None:
    # The Arrow path keys SHA-256's inner and outer states once: the published pseudonyms must stay
    # exactly hmac.digest's (released pseudonyms never change).
    step = PseudonymizeStep(columns=("a",), secret_env="K", length=length, prefix=prefix)
    got = step._text_pseudonyms(pd.Series(pd.array(values, dtype=f"string[{storage}]")), key)
    want = [None if v is None else prefix + hmac.digest(key, v.encode(), "sha256").hex()[:length] for v in values]
    assert [None if x is pd.NA else x for x in got.tolist()] == want
