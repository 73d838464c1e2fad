"""Scan published columns for identifiers: emails, phones, postal codes, SINs, street addresses, person names.

Every value of every string column is scanned (no sampling), vectorized over the column's distinct
values with pyarrow compute (RE2, in C++): a column of a million rows and 80 categories costs 80
regex evaluations, a million distinct free-text values one pass per check. Values are never
returned, only which checks matched how many distinct values.

Person names: a value holds a person name when two adjacent words are a first name and a surname
(either order), or a known first name (surname) next to a name-shaped word that is not a common
word, in any case; or when the whole value is two or three capitalised words none of which is a
common word (names on no list). The name lists are Faker's person providers (every locale with Latin-script names), loaded
at runtime from the installed faker package; common words come from Faker's word lists.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CHECKS = ("email", "phone", "postal-code", "sin", "street-address", "person-name")
"The identifier checks, by the names waivers use."

_SEP = r"[\s.\-]*"
_AT = r"(?:@|\s*[\(\[\{<]\s*at\s*[\)\]\}>]\s*|\s+at\s+)"
_DOT = r"(?:\.|\s*[\(\[\{<]\s*dot\s*[\)\]\}>]\s*|\s+dot\s+)"
PATTERNS: dict[str, str] = {
    # Plain and obfuscated: jane@example.com, jane(at)example.com, jane [at] example [dot] com.
    "email": rf"(?i)[a-z0-9._%+\-]+{_AT}[a-z0-9\-]+(?:{_DOT}[a-z0-9\-]+)*{_DOT}[a-z]{{2,}}\b",
    # North American numbers in any layout: 4165550199, (416)555-0199, 416-555-0199,
    # +1 416 555 0199, 1-416-555-0199, 416.555.0199 (digits not glued to letters or other digits).
    "phone": rf"(?:^|[^0-9A-Za-z_\-])(?:\+?1{_SEP})?\(?[2-9]\d\d\)?{_SEP}[2-9]\d\d{_SEP}\d{{4}}(?:$|[^0-9])",
    "postal-code": r"(?i)(?:^|[^0-9a-z])[abceghj-nprstvxy]\d[abceghj-nprstv-z][ \-]?\d[abceghj-nprstv-z]\d(?:$|[^0-9a-z])",
    "street-address": (
        r"(?i)(?:^|[^0-9a-z])\d{1,5}[a-z]?(?:\s+[a-z0-9'.\-]+){1,4}?\s+"
        r"(?:st|street|ave|avenue|rd|road|blvd|boulevard|dr|drive|cres|crescent|crt|court|ct|lane|ln|way|pl|place|"
        r"cir|circle|terr?|terrace|pkwy|parkway|hwy|highway|sq|square|trail|trl|gate|gardens|gdns|grove|grv|"
        r"heights|hts|row|path|walk|line|sideroad|concession|close|mews|hill|park|pk)\b\.?"
    ),
}
_SIN = r"(?:^|[^0-9A-Za-z\-])(?P<sin>\d{3}[ \-]?\d{3}[ \-]?\d{3})(?:$|[^0-9])"
_NAME_SHAPED = r"^\p{Ll}[\p{Ll}'’]+$"
# A whole value written as a name: two or three capitalised words (hyphenated or with an apostrophe).
_NAME_WORD = r"\p{Lu}\p{Ll}+(?:[\-'’]\p{Lu}?\p{Ll}+)?"
_WHOLE_NAME = rf"^\s*{_NAME_WORD}(?:\s+{_NAME_WORD}){{1,2}}\s*$"
_LATIN = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿ'’ \-]+$")

# Words that are never read as a name even when a name list holds them (premises, offences,
# directions, place words): the name lists include "Park", "Hill", "Major", "King", "Rose".
_COMMON = """
a an and or of the to in on at by for from with without under over into near north south east west
upper lower central centre center old new little great st saint mount mt park hill hills heights village
road street avenue lane way court place square gardens grove terrace ridge valley creek river lake beach
bay harbour harbor point junction corridor crossing landing commons flats green yards row glen woods wood
forest meadow meadows field fields brook brae cliff cliffs crest gate vale view island islands downs
theft assault robbery break enter auto motor vehicle bicycle weapon force use incident incidents reported
crime crimes offence offense attempt mischief fraud homicide shooting firearm discharge injuries death
apartment house commercial outside transit educational other unknown none null yes no women men man woman
black white brown grey gray red blue green yellow orange purple pink silver gold asian latino indigenous
middle eastern southeast southern northern western eastern multiple single total all any some
division area region city town toronto ontario canada police service public safety data
ii iii iv vi vii viii ix xi xii jr sr mr mrs ms dr inc ltd co corp etc
""".split()


def _provider_list(cls: type, attr: str) -> list[str]:
    for base in cls.__mro__:
        v = base.__dict__.get(attr)
        if isinstance(v, (list, tuple, dict)):
            return [str(x) for x in v]
    return []


@functools.lru_cache(maxsize=8)
def _faker_names(exclude_locales: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    import faker.providers.person as person

    firsts: set[str] = set()
    lasts: set[str] = set()
    for mod in pkgutil.iter_modules(person.__path__):
        if mod.name in exclude_locales:
            continue
        try:
            cls = importlib.import_module(f"{person.__name__}.{mod.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attr, into in (("first_names", firsts), ("first_names_female", firsts), ("first_names_male", firsts),
                           ("last_names", lasts)):
            for n in _provider_list(cls, attr):
                if _LATIN.match(n):
                    for part in re.split(r"[\s\-]+", n.lower()):
                        if len(part) >= 2:
                            into.add(part)
    return frozenset(firsts), frozenset(lasts)


@functools.lru_cache(maxsize=1)
def _english() -> frozenset[str]:
    """English dictionary words (GCIDE, from the english-words package) and Faker's word list."""
    words: set[str] = set()
    try:
        from english_words import get_english_words_set

        words.update(get_english_words_set(["gcide"], lower=True, alpha=True))
    except ImportError:  # pragma: no cover - a dependency; the scan still runs on Faker's words
        pass
    from faker.providers.lorem.en_US import Provider as Lorem

    words.update(w.lower() for w in Lorem.word_list)
    return frozenset(words)


@functools.lru_cache(maxsize=8)
def name_lists(exclude_locales: tuple[str, ...] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), lower case, from every Faker person provider with Latin-script names.

    `exclude_locales` leaves locales out (tests measure recall on names the scanner does not know).
    """
    firsts, lasts = _faker_names(exclude_locales)
    never = frozenset(_COMMON)
    return firsts - never, lasts - never


@functools.lru_cache(maxsize=8)
def common_words(exclude_locales: tuple[str, ...] = ()) -> frozenset[str]:
    """Words that are not names: place and police words, and English words no name list holds."""
    firsts, lasts = _faker_names(exclude_locales)
    return frozenset(_COMMON) | (_english() - firsts - lasts)


def _distinct(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Distinct non-null values of a column as a pyarrow string array."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        # Text columns go to Arrow as they are (no copy for Arrow-backed strings): distinct values there.
        arr = pa.array(values, from_pandas=True).cast(pa.large_string())
    elif isinstance(values, pd.Series):
        arr = pa.array(values.dropna().astype(str).to_numpy(dtype=object), type=pa.large_string())
    else:
        arr = values.cast(pa.large_string()) if values.type != pa.large_string() else values
    u = pc.unique(arr)
    if isinstance(u, pa.ChunkedArray):
        u = u.combine_chunks()
    return pc.drop_null(u)


def _luhn(candidates: pa.Array) -> np.ndarray:
    """Luhn validity of 9-digit strings (separators removed), vectorized over the candidates."""
    digits = pc.replace_substring_regex(candidates, r"[^0-9]", "")
    ok_len = pc.equal(pc.utf8_length(digits), 9).to_numpy(zero_copy_only=False)
    good = np.zeros(len(candidates), dtype=bool)
    idx = np.flatnonzero(ok_len)
    if not len(idx):
        return good
    raw = "".join(digits.take(pa.array(idx)).to_pylist()).encode()
    d = (np.frombuffer(raw, dtype=np.uint8) - 48).reshape(-1, 9).astype(np.int64)
    dbl = d[:, 1::2] * 2
    dbl = np.where(dbl > 9, dbl - 9, dbl)
    total = d[:, 0::2].sum(axis=1) + dbl.sum(axis=1)
    good[idx] = total % 10 == 0
    return good


def _sin_mask(u: pa.Array) -> np.ndarray:
    has = pc.match_substring_regex(u, _SIN).to_numpy(zero_copy_only=False)
    out = np.zeros(len(u), dtype=bool)
    idx = np.flatnonzero(has)
    if not len(idx):
        return out
    sub = u.take(pa.array(idx))
    cand = pc.extract_regex(sub, _SIN).field(0)
    out[idx] = _luhn(cand)
    return out


@functools.lru_cache(maxsize=8)
def _value_sets(exclude_locales: tuple[str, ...]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The name lists and common words as Arrow arrays, built once (hash sets are built per call)."""
    firsts, lasts = name_lists(exclude_locales)
    common = common_words(exclude_locales)
    return tuple(pa.array(sorted(x), type=pa.large_string()) for x in (firsts, lasts, common))  # type: ignore[return-value]


# Two runs of letters (or apostrophes) of two or more, separated only by whitespace or hyphens: what the
# pair rule below needs in a value before it can fire (lower-casing maps letters to letters one for one).
_TWO_WORDS = r"[\p{L}'’]{2,}[\s\-]+[\p{L}'’]{2,}"


def _name_mask(u: pa.Array, exclude_locales: tuple[str, ...] = ()) -> np.ndarray:
    """Values holding a first name and a surname next to each other (any case), vectorized over words.

    Only values that could match (two letter words side by side, or the whole-value name shape) go
    through the word split; the rest (codes, numbers, pseudonyms) cannot hold a name by either rule.
    """
    cand = (pc.match_substring_regex(u, _TWO_WORDS).to_numpy(zero_copy_only=False)
            | pc.match_substring_regex(u, _WHOLE_NAME).to_numpy(zero_copy_only=False))
    if cand.all():
        return _name_mask_exact(u, exclude_locales)
    out = np.zeros(len(u), dtype=bool)
    idx = np.flatnonzero(cand)
    if len(idx):
        out[idx] = _name_mask_exact(u.take(pa.array(idx)), exclude_locales)
    return out


def _name_mask_exact(u: pa.Array, exclude_locales: tuple[str, ...] = ()) -> np.ndarray:
    """`_name_mask` over every value given."""
    first_set, last_set, common_set = _value_sets(exclude_locales)
    # Punctuation other than a hyphen or an apostrophe ends a name: "(Money Mart, Tsx)" pairs no
    # words across the comma; it becomes a token no rule accepts.
    low = pc.replace_substring_regex(pc.utf8_lower(u), r"[^\p{L}'’\-\s]+", " | ")
    # Words are split at runs of hyphens and whitespace: after the line above the only whitespace left
    # is RE2's \s (ASCII), so hyphens become spaces and Arrow's plain ASCII split does it, far faster
    # than a regex split (which also yields empty words at the ends, which no rule accepts).
    words = pc.ascii_split_whitespace(pc.replace_substring(low, "-", " "))
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
    a_f, b_f = f[:-1], f[1:]
    a_l, b_l = last[:-1], last[1:]
    a_s, b_s = shaped[:-1], shaped[1:]
    # A known first name followed by a name-shaped word (a surname, known or not: "Jane Smith",
    # "Jane Virtanen"), a name-shaped word followed by a known surname (an unseen first name), or
    # "Smith Jane" (surname first, as records systems list people). Common words never count.
    pair = same & a_s & b_s & (a_f | b_l | (a_l & b_f))
    out = np.zeros(len(u), dtype=bool)
    out[parent[:-1][pair]] = True
    # Names on no list ("Viljo Lampinen"): a value that is nothing but two or three capitalised
    # words, none of them a common word. All-capitals text (codes, models) is left to the lists.
    whole = pc.match_substring_regex(u, _WHOLE_NAME).to_numpy(zero_copy_only=False)
    has_common = np.bincount(parent[com], minlength=len(u)) > 0
    out |= whole & ~has_common
    return out


def scan_values(values: pd.Series | pa.Array | pa.ChunkedArray, checks: Iterable[str] = CHECKS,
                exclude_locales: tuple[str, ...] = ()) -> dict[str, int]:
    """Per check, how many distinct values of one column match it (values are never returned)."""
    u = _distinct(values)
    hits: dict[str, int] = {}
    if not len(u):
        return hits
    for check in checks:
        if check in PATTERNS:
            m = pc.match_substring_regex(u, PATTERNS[check]).to_numpy(zero_copy_only=False)
        elif check == "sin":
            m = _sin_mask(u)
        elif check == "person-name":
            m = _name_mask(u, exclude_locales)
        else:
            continue
        n = int(np.count_nonzero(m))
        if n:
            hits[check] = n
    return hits


def match_mask(values: pd.Series, check: str, exclude_locales: tuple[str, ...] = ()) -> np.ndarray:
    """Row mask of the values matching one check (tests and benchmarks measure recall with it)."""
    s = values.astype("string")
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    u = pa.array(np.asarray(uniq, dtype=object), type=pa.large_string())
    if check in PATTERNS:
        m = pc.match_substring_regex(u, PATTERNS[check]).to_numpy(zero_copy_only=False)
    elif check == "sin":
        m = _sin_mask(u)
    else:
        m = _name_mask(u, exclude_locales)
    out = np.zeros(len(s), dtype=bool)
    ok = codes >= 0
    out[ok] = m[codes[ok]]
    return out


def is_text_column(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s) or s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype)


def scan_frame(frame: pd.DataFrame, waivers: Mapping[str, Iterable[str]] | None = None) -> dict[str, dict[str, int]]:
    """Per string column, the number of distinct values matching each check not waived for that column."""
    waivers = waivers or {}
    hits: dict[str, dict[str, int]] = {}
    for col in frame.columns:
        s = frame[col]
        if not is_text_column(s):
            continue
        waived = set(waivers.get(str(col), ()))
        h = scan_values(s, [c for c in CHECKS if c not in waived])
        if h:
            hits[str(col)] = h
    return hits
