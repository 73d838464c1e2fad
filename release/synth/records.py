"""Seeded synthetic internal police records: MCI-style crime occurrences and use-of-force subjects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from faker import Faker

from release.synth.network import City

__all__ = ["synth_crimes", "synth_use_of_force", "write_records", "CRIME_COLUMNS", "UOF_COLUMNS"]

CRIME_COLUMNS = [
    "record_id",
    "event_unique_id",
    "occurrence_datetime",
    "report_datetime",
    "offence",
    "mci_category",
    "premises_type",
    "division",
    "hood_id",
    "neighbourhood",
    "latitude",
    "longitude",
    "unfounded",
    "victim_person_id",
    "victim_name",
    "victim_dob",
    "victim_address",
    "victim_phone",
    "accused_person_id",
    "accused_name",
]
UOF_COLUMNS = [
    "record_id",
    "incident_id",
    "person_id",
    "subject_name",
    "subject_dob",
    "occurrence_date",
    "perceived_race",
    "gender",
    "age_group",
    "division",
    "force_type",
    "strip_search",
    "arrest",
    "injury",
    "officer_badge",
]

# Row shares close to the published TPS Major Crime Indicators (2014-2024 open data).
_MCI = {
    "Assault": 0.52,
    "Break and Enter": 0.19,
    "Auto Theft": 0.15,
    "Robbery": 0.07,
    "Theft Over": 0.04,
    "Sexual Violation": 0.03,
}
_OFFENCES = {
    "Assault": {
        "Assault": 0.70,
        "Assault With Weapon": 0.17,
        "Assault Bodily Harm": 0.06,
        "Assault Peace Officer": 0.04,
        "Aggravated Assault": 0.03,
    },
    "Break and Enter": {"B&E": 0.78, "B&E W'Intent": 0.16, "Unlawfully In Dwelling-House": 0.06},
    "Auto Theft": {"Theft Of Motor Vehicle": 1.0},
    "Robbery": {
        "Robbery - Mugging": 0.30,
        "Robbery With Weapon": 0.35,
        "Robbery - Business": 0.15,
        "Robbery - Other": 0.20,
    },
    "Theft Over": {"Theft Over": 0.85, "Theft From Motor Vehicle Over": 0.15},
    "Sexual Violation": {"Sexual Assault": 0.82, "Sexual Interference": 0.18},
}
_PREMISES = ["Apartment", "House", "Commercial", "Outside", "Transit", "Educational", "Other"]
# Premises depend on the offence family: auto theft is mostly outside/driveways, B&E houses and shops.
_PREMISES_BY_MCI = {
    "Assault": [0.30, 0.13, 0.20, 0.24, 0.05, 0.03, 0.05],
    "Break and Enter": [0.22, 0.33, 0.35, 0.02, 0.00, 0.03, 0.05],
    "Auto Theft": [0.12, 0.33, 0.10, 0.42, 0.00, 0.00, 0.03],
    "Robbery": [0.10, 0.05, 0.30, 0.45, 0.06, 0.01, 0.03],
    "Theft Over": [0.15, 0.20, 0.45, 0.12, 0.01, 0.02, 0.05],
    "Sexual Violation": [0.38, 0.22, 0.12, 0.14, 0.05, 0.04, 0.05],
}
# Hour-of-day weights: low in the small hours, rising through the afternoon to an evening peak;
# midnight and noon carry extra mass because "time unknown" is often keyed as 00:00 or 12:00.
_HOUR_W = np.array(
    [
        5.2,
        3.6,
        3.4,
        2.8,
        2.0,
        1.5,
        1.7,
        2.3,
        3.2,
        3.6,
        3.9,
        4.1,
        5.0,
        4.5,
        4.7,
        5.0,
        5.3,
        5.6,
        5.8,
        5.8,
        5.6,
        5.4,
        5.3,
        4.9,
    ]
)
_START = np.datetime64("2023-01-01T00:00:00", "s")
_END = np.datetime64("2026-01-01T00:00:00", "s")

_RACES = [
    "Black",
    "East/Southeast Asian",
    "Indigenous",
    "Latino",
    "Middle Eastern",
    "South Asian",
    "White",
    "Multiple race group",
]
# Shares of reported use-of-force incidents by perceived race in the TPS race-based data release.
_RACE_P = [0.323, 0.048, 0.026, 0.016, 0.031, 0.052, 0.331, 0.173]
_GENDERS = ["Man", "Woman", "Gender diverse"]
_GENDER_P = [0.85, 0.14, 0.01]
_AGE_GROUPS = [
    "Under 18",
    "18 to 24",
    "25 to 34",
    "35 to 44",
    "45 to 54",
    "55 to 64",
    "65 and older",
]
_AGE_EDGES = np.array([18, 25, 35, 45, 55, 65])
_TPS_DIVISIONS = [
    "D11",
    "D12",
    "D13",
    "D14",
    "D22",
    "D23",
    "D31",
    "D32",
    "D33",
    "D41",
    "D42",
    "D43",
    "D51",
    "D52",
    "D53",
    "D55",
]
_TPS_DIV_W = [5, 6, 4, 9, 6, 6, 8, 6, 4, 7, 4, 6, 9, 8, 4, 6]
_FORCE = [
    "Physical Control",
    "Conducted Energy Weapon",
    "Firearm Pointed",
    "Baton",
    "OC Spray",
    "Other Weapon",
]
_FORCE_P = [0.52, 0.17, 0.17, 0.03, 0.05, 0.06]

_NSA = "NSA"  # "no specified address": TPS's code for records that cannot be placed


def _pick(
    rng: np.random.Generator, labels: list[str], p: Sequence[float] | np.ndarray, size: int
) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.asarray(labels, dtype=object)[rng.choice(len(labels), size=size, p=p / p.sum())]


def _digits(numbers: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal strings as a fixed-width numpy array (C-speed, unlike per-row str.zfill).

    ``width`` is a minimum: it widens when a number needs more digits, so ids can never collide.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers):
        width = max(width, len(str(int(numbers.max()))))
    padded = (10**width + np.asarray(numbers, dtype=np.int64)).astype(f"U{width + 1}")
    chars = padded.view("U1").reshape(len(padded), width + 1)[:, 1:]
    return np.ascontiguousarray(chars).view(f"U{width}").ravel()


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    out = np.asarray(parts[0])
    for part in parts[1:]:
        out = np.strings.add(out, part)
    return out


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return _cat(prefix, _digits(numbers, width))


def _iso_seconds(ts: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(ts.astype("datetime64[s]"), unit="s")


def _iso_date(ts: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(ts.astype("datetime64[D]"), unit="D")


def _group_sizes(rng: np.random.Generator, n: int, p: list[float]) -> np.ndarray:
    """Group sizes 1..len(p) summing to exactly n (the last group is trimmed)."""
    sizes = rng.choice(np.arange(1, len(p) + 1), size=n, p=p)
    cut = int(np.searchsorted(np.cumsum(sizes), n))
    sizes = sizes[: cut + 1].copy()
    sizes[-1] -= sizes.sum() - n
    return sizes


def _repeat_people(rng: np.random.Generator, n: int, a: float, cap: int) -> np.ndarray:
    """Person index for each of n slots: per-person frequency is Zipf(a) capped, so most people
    appear once while a handful (repeat victims / frequent subjects) appear in dozens."""
    freq = np.minimum(rng.zipf(a, size=n), cap)
    k = int(np.searchsorted(np.cumsum(freq), n)) + 1
    slots = np.repeat(np.arange(k), freq[:k])[:n]
    return rng.permutation(slots)


class _People:
    """A vectorized person table: Faker supplies name and street pools; numpy combines them per person."""

    def __init__(
        self,
        pools: tuple[np.ndarray, np.ndarray, np.ndarray],
        rng: np.random.Generator,
        k: int,
        id_prefix: str,
        id_offset: int,
        age_shape: float,
        age_scale: float,
        age_min: float,
    ) -> None:
        firsts, lasts, streets = pools
        # Sparse, shuffled id numbers so ids do not reveal draw order.
        self.ids = _ids(id_prefix, id_offset + rng.permutation(4 * k)[:k], 7)
        self.names = _cat(
            firsts[rng.integers(len(firsts), size=k)], " ", lasts[rng.integers(len(lasts), size=k)]
        )
        # Ages (at mid-2024) from a shifted gamma: police data skew to young adults with a long tail.
        age = np.clip(rng.gamma(age_shape, age_scale, size=k) + age_min, 12.0, 95.0)
        self.dob_days = np.datetime64("2024-07-01", "D") - (age * 365.25).astype(np.int64).astype(
            "timedelta64[D]"
        )
        self.dobs = _iso_date(self.dob_days)
        letters = np.array(list("ABCEGHJKLMNPRSTVWXYZ"))
        postal = _cat(
            "M",
            _digits(rng.integers(1, 10, size=k), 1),
            letters[rng.integers(20, size=k)],
            " ",
            _digits(rng.integers(10, size=k), 1),
            letters[rng.integers(20, size=k)],
            _digits(rng.integers(10, size=k), 1),
        )
        self.addresses = _cat(
            rng.integers(1, 2400, size=k).astype("U4"),
            " ",
            streets[rng.integers(len(streets), size=k)],
            ", Toronto, ON ",
            postal,
        )
        area = np.array(["416", "647", "437"])[rng.choice(3, size=k, p=[0.55, 0.35, 0.10])]
        self.phones = _cat(
            area,
            "-",
            rng.integers(200, 1000, size=k).astype("U3"),
            "-",
            _digits(rng.integers(0, 10000, size=k), 4),
        )
        # Convert once per person: fancy-indexing object arrays later only copies references.
        for attr in ("ids", "names", "dobs", "addresses", "phones"):
            setattr(self, attr, getattr(self, attr).astype(object))


def _name_pools(fake: Faker, streets: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique first/last name pools from Faker; a few thousand draws give every common name."""
    firsts = np.array(list(dict.fromkeys(fake.first_name() for _ in range(2000))))
    lasts = np.array(list(dict.fromkeys(fake.last_name() for _ in range(2000))))
    return firsts, lasts, np.array(streets)


def _street_pool(city: City) -> list[str]:
    return sorted({f["properties"]["name"] for f in city.streets["features"]})


def _locate(
    lat: np.ndarray, lon: np.ndarray, city: City
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Division, hood code and hood name of the polygon containing each point ("NSA" if none)."""
    n = len(lat)
    hood_idx = np.full(n, -1, dtype=np.int64)
    feats = city.neighbourhoods["features"]
    ok = np.isfinite(lat) & np.isfinite(lon) & ~((lat == 0) & (lon == 0))
    for k, f in enumerate(feats):
        poly = shapely.geometry.shape(f["geometry"])
        shapely.prepare(poly)
        todo = ok & (hood_idx < 0)
        hit = shapely.intersects_xy(poly, lon[todo], lat[todo])
        hood_idx[np.flatnonzero(todo)[hit]] = k
    # Divisions are unions of whole neighbourhoods, so each hood maps to exactly one division.
    hood_div = []
    div_polys = [
        (d["properties"]["DIVISION"], shapely.geometry.shape(d["geometry"]))
        for d in city.divisions["features"]
    ]
    for f in feats:
        pt = shapely.geometry.shape(f["geometry"]).point_on_surface()
        hood_div.append(next((name for name, p in div_polys if p.contains(pt)), _NSA))
    codes = np.array([f["properties"]["AREA_SHORT_CODE"] for f in feats] + [_NSA], dtype=object)
    names = np.array([f["properties"]["AREA_NAME"] for f in feats] + [_NSA], dtype=object)
    divs = np.array(hood_div + [_NSA], dtype=object)
    return divs[hood_idx], codes[hood_idx], names[hood_idx]


def synth_crimes(n: int, city: City, seed: int = 11) -> pd.DataFrame:
    """``n`` offence-level crime rows (1-3 rows per event) located at the city's address points."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_CA")
    fake.seed_instance(seed)

    sizes = _group_sizes(rng, n, [0.86, 0.11, 0.03])
    n_ev = len(sizes)
    ev = np.repeat(np.arange(n_ev), sizes)
    first_row = np.r_[0, np.cumsum(sizes)[:-1]]

    # Occurrence: uniform day, hour from the evening-peaked profile; many minutes keyed on the hour.
    n_days = int((_END - _START) // np.timedelta64(1, "D"))
    day = rng.integers(n_days, size=n_ev)
    hour = rng.choice(24, size=n_ev, p=_HOUR_W / _HOUR_W.sum())
    minute = np.where(rng.random(n_ev) < 0.35, 0, rng.integers(60, size=n_ev))
    second = np.where(rng.random(n_ev) < 0.9, 0, rng.integers(60, size=n_ev))
    occ = _START + (day * 86400 + hour * 3600 + minute * 60 + second).astype("timedelta64[s]")
    # Reporting delay: mostly within hours, a share the next day or so, a tail weeks later (frauds, B&E on return).
    kind = rng.choice(3, size=n_ev, p=[0.70, 0.22, 0.08])
    delay = np.select(
        [kind == 0, kind == 1],
        [rng.exponential(5400.0, n_ev), rng.exponential(86400.0, n_ev)],
        rng.uniform(2 * 86400.0, 60 * 86400.0, n_ev),
    ).astype(np.int64)
    rep = occ + delay.astype("timedelta64[s]")
    # Event numbers are issued in report order, prefixed by report year (GO-YYYY + serial).
    rep_order = np.argsort(rep, kind="stable")
    serial = np.empty(n_ev, dtype=np.int64)
    serial[rep_order] = 100_000 + np.cumsum(rng.integers(1, 4, size=n_ev))
    rep_year = rep.astype("datetime64[Y]").astype(np.int64) + 1970
    event_ids = _cat("GO-", rep_year.astype("U4"), _digits(serial, 7)).astype(object)

    cats = list(_MCI)
    cat_idx = rng.choice(len(cats), size=n, p=list(_MCI.values()))
    mci = np.asarray(cats, dtype=object)[cat_idx]
    offence = np.empty(n, dtype=object)
    premises_row = np.empty(n, dtype=object)
    for c, name in enumerate(cats):
        m = cat_idx == c
        offence[m] = _pick(rng, list(_OFFENCES[name]), list(_OFFENCES[name].values()), int(m.sum()))
        premises_row[m] = _pick(rng, _PREMISES, _PREMISES_BY_MCI[name], int(m.sum()))
    premises = premises_row[first_row][ev]  # one place per event

    # Location: a uniformly drawn address point (so denser blocks get more events), jittered 0-15 m.
    addr = city.addresses
    alat = addr["lat"].to_numpy(dtype=np.float64)
    alon = addr["lon"].to_numpy(dtype=np.float64)
    pick = rng.integers(len(addr), size=n_ev)
    r = rng.uniform(0.0, 15.0, n_ev)
    theta = rng.uniform(0.0, 2 * np.pi, n_ev)
    lat = alat[pick] + r * np.sin(theta) / 111_320.0
    lon = alon[pick] + r * np.cos(theta) / (111_320.0 * np.cos(np.radians(alat[pick])))
    div, hood, hood_name = _locate(lat, lon, city)
    # A jitter that crossed the city edge falls back to the address point itself, which is inside.
    out = hood == _NSA
    if out.any():
        lat[out], lon[out] = alat[pick][out], alon[pick][out]
        div[out], hood[out], hood_name[out] = _locate(lat[out], lon[out], city)
    lat = np.round(lat, 7)
    lon = np.round(lon, 7)
    u = rng.random(n_ev)
    missing, zero = u < 0.01, (u >= 0.01) & (u < 0.015)
    lat[missing], lon[missing] = np.nan, np.nan
    lat[zero], lon[zero] = 0.0, 0.0
    div[missing | zero] = _NSA
    hood[missing | zero] = _NSA
    hood_name[missing | zero] = _NSA
    unfounded = rng.random(n_ev) < 0.02

    pools = _name_pools(fake, _street_pool(city))
    # Victims: per row, but later rows of an event usually keep the first row's victim.
    v_slots = _repeat_people(rng, n, 2.5, 60)
    k_v = int(v_slots.max()) + 1
    victims = _People(pools, rng, k_v, "P", 1_000_000, 3.0, 8.0, 14.0)
    same = (rng.random(n) < 0.75) & (np.arange(n) != first_row[ev])
    v_slots = np.where(same, v_slots[first_row[ev]], v_slots)
    # Accused: per event, ~40% unknown; a separate pool so repeat offenders are not repeat victims.
    a_slots = _repeat_people(rng, n_ev, 2.3, 40)
    # Accused ids start above the victim id range so the two pools never share an id by accident.
    accused = _People(pools, rng, int(a_slots.max()) + 1, "P", 1_000_000 + 4 * k_v, 2.5, 7.0, 14.0)
    a_known = rng.random(n_ev) >= 0.40
    a_id_ev = accused.ids[a_slots]
    a_name_ev = accused.names[a_slots]
    a_id_ev[~a_known] = None
    a_name_ev[~a_known] = None
    a_id, a_name = a_id_ev[ev], a_name_ev[ev]

    df = pd.DataFrame(
        {
            "record_id": _ids("R", np.arange(1, n + 1), 7).astype(object),
            "event_unique_id": event_ids[ev],
            "occurrence_datetime": _iso_seconds(occ).astype(object)[ev],
            "report_datetime": _iso_seconds(rep).astype(object)[ev],
            "offence": offence,
            "mci_category": mci,
            "premises_type": premises,
            "division": div[ev],
            "hood_id": hood[ev],
            "neighbourhood": hood_name[ev],
            "latitude": lat[ev],
            "longitude": lon[ev],
            "unfounded": unfounded[ev],
            "victim_person_id": victims.ids[v_slots],
            "victim_name": victims.names[v_slots],
            "victim_dob": victims.dobs[v_slots],
            "victim_address": victims.addresses[v_slots],
            "victim_phone": victims.phones[v_slots],
            "accused_person_id": a_id,
            "accused_name": a_name,
        }
    )
    return df[CRIME_COLUMNS]


def synth_use_of_force(n: int, seed: int = 13) -> pd.DataFrame:
    """``n`` person-level use-of-force rows (several subjects per incident sometimes)."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_CA")
    fake.seed_instance(seed)

    sizes = _group_sizes(rng, n, [0.76, 0.16, 0.06, 0.02])
    n_inc = len(sizes)
    inc = np.repeat(np.arange(n_inc), sizes)
    n_days = int((_END - _START) // np.timedelta64(1, "D"))
    day = np.sort(rng.integers(n_days, size=n_inc))  # incident numbers follow date order
    occ = np.datetime64("2023-01-01", "D") + day.astype("timedelta64[D]")
    inc_year = occ.astype("datetime64[Y]").astype(np.int64) + 1970
    inc_ids = _cat("UOF-", inc_year.astype("U4"), "-", _digits(np.arange(1, n_inc + 1), 6)).astype(
        object
    )

    slots = _repeat_people(rng, n, 3.2, 12)
    k = int(slots.max()) + 1
    pools = _name_pools(fake, [fake.street_name() for _ in range(400)])
    people = _People(pools, rng, k, "S", 2_000_000, 2.5, 7.0, 14.0)
    race = _pick(rng, _RACES, _RACE_P, k)
    gender = _pick(rng, _GENDERS, _GENDER_P, k)
    occ_row = occ[inc]
    # Age group follows from the subject's fixed date of birth, so repeats age consistently.
    age = ((occ_row - people.dob_days[slots]).astype(np.int64) / 365.25).astype(np.int64)
    age_group = np.asarray(_AGE_GROUPS, dtype=object)[
        np.searchsorted(_AGE_EDGES, age, side="right")
    ]

    n_off = min(90_000, max(50, n // 15))  # the badge pool holds 90,000 numbers (above 1.35M records)
    badges = _ids("B", 10_000 + rng.permutation(90_000)[:n_off], 5).astype(object)
    # Officer involvement is skewed: a minority of officers account for many reports.
    officer_w = rng.pareto(1.5, n_off) + 1.0
    officer = badges[rng.choice(n_off, size=n_inc, p=officer_w / officer_w.sum())]

    df = pd.DataFrame(
        {
            "record_id": _ids("U", np.arange(1, n + 1), 7).astype(object),
            "incident_id": inc_ids[inc],
            "person_id": people.ids[slots],
            "subject_name": people.names[slots],
            "subject_dob": people.dobs[slots],
            "occurrence_date": _iso_date(occ).astype(object)[inc],
            "perceived_race": race[slots],
            "gender": gender[slots],
            "age_group": age_group,
            "division": _pick(rng, _TPS_DIVISIONS, _TPS_DIV_W, n_inc)[inc],
            "force_type": _pick(rng, _FORCE, _FORCE_P, n),
            "strip_search": rng.random(n) < 0.05,
            "arrest": rng.random(n) < 0.80,
            "injury": rng.random(n) < 0.10,
            "officer_badge": officer[inc],
        }
    )
    return df[UOF_COLUMNS]


def write_records(df: pd.DataFrame, path: Path) -> None:
    """Write records as Parquet when the suffix is .parquet/.pq, else CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".parquet", ".pq"}:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
