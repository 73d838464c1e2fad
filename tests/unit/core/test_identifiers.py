"""The identifier scan finds identifiers in every layout, in every value, and leaves place names to waivers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from release.outputs.identifiers import CHECKS, match_mask, scan_frame, scan_values

PHONES = ["4165550199", "(416)555-0199", "(416) 555-0199", "416-555-0199", "+1 416 555 0199",
          "416.555.0199", "1-416-555-0199", "+14165550199", "416 555 0199", "call 647-555-0142 after 5"]
EMAILS = ["jane@example.com", "jane(at)example.com", "jane [at] example [dot] com", "JANE AT EXAMPLE DOT COM",
          "j.doe+tips@mail.example.ca", "jane{at}example{dot}org"]
ADDRESSES = ["123 Main St", "123 main street", "45 QUEEN STREET WEST", "9 bloor st w", "1200 Bay Street, Unit 4",
             "77a Elm Avenue", "8 Oriole Pkwy"]
POSTAL = ["M5V 3L9", "m5v3l9", "K1A-0B1"]
# Valid SINs (Luhn) in three layouts; the same digits with the check digit changed are not SINs.
SINS = ["046 454 286", "046-454-286", "046454286"]


@pytest.mark.parametrize("value", PHONES)
def test_every_north_american_phone_layout(value: str) -> None:
    assert scan_values(pd.Series([value]), ["phone"]) == {"phone": 1}


@pytest.mark.parametrize("value", EMAILS)
def test_plain_and_obfuscated_emails(value: str) -> None:
    assert scan_values(pd.Series([value]), ["email"]) == {"email": 1}


@pytest.mark.parametrize("value", ADDRESSES)
def test_street_addresses_in_any_case(value: str) -> None:
    assert scan_values(pd.Series([value]), ["street-address"]) == {"street-address": 1}


@pytest.mark.parametrize("value", POSTAL)
def test_postal_codes(value: str) -> None:
    assert scan_values(pd.Series([value]), ["postal-code"]) == {"postal-code": 1}


def test_sins_are_checked_with_luhn() -> None:
    assert scan_values(pd.Series(SINS), ["sin"]) == {"sin": 3}
    assert scan_values(pd.Series(["046 454 287", "123 456 789"]), ["sin"]) == {}
    assert scan_values(pd.Series(["GO-2046454286"]), ["sin"]) == {}  # an event id, not a SIN


@pytest.mark.parametrize("value", ["Jane Smith", "JANE SMITH", "jane smith", "Smith Jane", "Mohammed Khan",
                                   "Witness: Maria Garcia-Lopez", "Jane Virtanen", "Viljo Lampinen"])
def test_person_names(value: str) -> None:
    assert scan_values(pd.Series([value]), ["person-name"]) == {"person-name": 1}


@pytest.mark.parametrize("value", ["Break and Enter", "Auto Theft", "Theft Over", "Assault With Weapon",
                                   "Lawrence Park North", "Yorkdale-Glen Park", "Reported Use of Force Incidents",
                                   "East/Southeast Asian", "THEFT UNDER - BICYCLE", "Apartment (Rooming House, Condo)",
                                   "Convenience Stores", "D14", "2024-01"])
def test_categories_and_place_names_are_not_person_names(value: str) -> None:
    assert scan_values(pd.Series([value]), CHECKS) == {}


def test_a_hyphenated_place_name_needs_its_waiver() -> None:
    frame = pd.DataFrame({"neighbourhood": ["Taylor-Massey", "Lawrence Park North"]})
    assert scan_frame(frame) == {"neighbourhood": {"person-name": 1}}
    assert scan_frame(frame, {"neighbourhood": ["person-name"]}) == {}


def test_every_value_is_scanned_not_a_sample() -> None:
    # The old scan looked at the first 200,000 values only.
    values = pd.Series(["D11"] * 300_000 + ["416-555-0199"], dtype="string")
    assert scan_values(values, ["phone"]) == {"phone": 1}


def test_names_from_lists_the_scanner_does_not_use() -> None:
    """Recall on names drawn from Faker locales that are left out of the scanner's lists."""
    held_out = ("fi_FI", "it_IT", "sv_SE")
    names = []
    for loc in held_out:
        fake = Faker(loc)
        fake.seed_instance(3)
        names += [f"{fake.first_name()} {fake.last_name()}" for _ in range(500)]
    found = match_mask(pd.Series(names), "person-name", exclude_locales=held_out)
    assert found.mean() >= 0.95


def test_tps_published_columns_pass_with_their_documented_waivers(tps_dir) -> None:
    """The real published TPS files hold no identifier once place and brand columns carry their waivers."""
    # Documented waivers (docs/identifiers.md): neighbourhood names are place names ("Blake-Jones");
    # bike makes are brands named after people ("Gary Fisher"); bike models are free-text model
    # codes (a nine-digit model number passes Luhn, "10 ONE WAY" reads as an address).
    waivers = {"Neighbourhood": ["person-name"], "Bike_Make": ["person-name"],
               "Bike_Model": ["person-name", "sin", "street-address"]}
    for name in ("bicycle_thefts_2014_2017.csv", "shootings_2004_2022.csv", "rbdc_uof_gender.csv"):
        frame = pd.read_csv(tps_dir / name, dtype=str, encoding="utf-8-sig")
        assert scan_frame(frame, waivers) == {}, name
    # Without the waivers the same columns are flagged: the waivers are what lets them pass.
    bikes = pd.read_csv(tps_dir / "bicycle_thefts_2014_2017.csv", dtype=str, encoding="utf-8-sig")
    assert set(scan_frame(bikes)) == set(waivers)


def test_planted_identifiers_in_a_large_column_are_all_found() -> None:
    """10,000 planted identifiers among 200,000 values (the 1M-row figure is in benchmarks/)."""
    rng = np.random.default_rng(5)
    n, k = 200_000, 10_000
    background = np.array(["Assault", "Theft Over", "Break and Enter", "Auto Theft", "D11", "NSA"], dtype=object)
    col = background[rng.integers(0, len(background), n)].copy()
    where = rng.choice(n, k, replace=False)
    fi = Faker("fi_FI")
    fi.seed_instance(1)
    planted = []
    for i in range(k):
        kind = i % 3
        num = f"{rng.integers(200, 999)}{rng.integers(200, 999)}{rng.integers(0, 9999):04d}"
        if kind == 0:
            layouts = [num, f"({num[:3]}){num[3:6]}-{num[6:]}", f"{num[:3]}-{num[3:6]}-{num[6:]}",
                       f"+1 {num[:3]} {num[3:6]} {num[6:]}", f"{num[:3]}.{num[3:6]}.{num[6:]}"]
            planted.append(("phone", layouts[i % 5]))
        elif kind == 1:
            planted.append(("email", f"user{i}(at)example.com" if i % 2 else f"user{i}@example.org"))
        else:
            planted.append(("person-name", f"{fi.first_name()} {fi.last_name()}"))
    col[where] = [v for _, v in planted]
    s = pd.Series(col, dtype="string")
    kinds = np.array([c for c, _ in planted])
    for check in ("phone", "email"):
        hit = match_mask(s, check)
        assert hit[where[kinds == check]].all()
        assert not hit[np.setdiff1d(np.arange(n), where)].any()
    names = match_mask(s, "person-name", exclude_locales=("fi_FI",))
    assert names[where[kinds == "person-name"]].mean() >= 0.95
    assert not names[np.setdiff1d(np.arange(n), where)].any()


def _name_mask_reference(u: pa.Array) -> np.ndarray:
    """The person-name rule as first written: every value through a regex word split."""
    from release.outputs.identifiers import _NAME_SHAPED, _WHOLE_NAME, _value_sets

    first_set, last_set, common_set = _value_sets(())
    low = pc.replace_substring_regex(pc.utf8_lower(u), r"[^\p{L}'’\-\s]+", " | ")
    words = pc.split_pattern_regex(low, r"[\s\-]+")
    flat = pc.list_flatten(words)
    parent = pc.list_parent_indices(words).to_numpy()
    if len(flat) < 2:
        return np.zeros(len(u), dtype=bool)
    flat = flat.cast(pa.large_string())
    f = pc.is_in(flat, value_set=first_set).to_numpy(zero_copy_only=False)
    last = pc.is_in(flat, value_set=last_set).to_numpy(zero_copy_only=False)
    com = pc.is_in(flat, value_set=common_set).to_numpy(zero_copy_only=False)
    shaped = pc.match_substring_regex(flat, _NAME_SHAPED).to_numpy(zero_copy_only=False) & ~com
    same = parent[:-1] == parent[1:]
    pair = same & shaped[:-1] & shaped[1:] & (f[:-1] | last[1:] | (last[:-1] & f[1:]))
    out = np.zeros(len(u), dtype=bool)
    out[parent[:-1][pair]] = True
    whole = pc.match_substring_regex(u, _WHOLE_NAME).to_numpy(zero_copy_only=False)
    out |= whole & ~(np.bincount(parent[com], minlength=len(u)) > 0)
    return out


_WORDS = ["Jane", "smith", "SMITH", "Maria", "garcia", "O'Brien", "Park", "theft", "GO-3fa2b1", "Zoë", "İlker",
          "Viljo", "Lampinen", "x", "12", "-", "--", " ", "\t", "\u00a0", ",", "’", "'", "ab", "Ǆemal"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_WORDS) | st.text(max_size=4), max_size=6).map("".join), min_size=1,
                max_size=40))
def test_name_rule_with_its_prefilter_and_plain_split_matches_the_regex_split(values: list[str]) -> None:
    from release.outputs.identifiers import _name_mask

    u = pa.array(values, pa.large_string())
    np.testing.assert_array_equal(_name_mask(u), _name_mask_reference(u))
