"""Synthetic enforcement actions (one row per person per action) for the benchmarking demo and tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from faker import Faker

from release.synth.records import (
    _AGE_GROUPS,
    _GENDER_P,
    _GENDERS,
    _RACES,
    _TPS_DIV_W,
    _TPS_DIVISIONS,
    _ids,
    _pick,
)

ENFORCEMENT_COLUMNS = ["record_id", "action_id", "person_id", "subject_name", "action_date", "perceived_race",
                       "age_group", "gender", "division", "use_of_force", "strip_search", "booked"]

# Share of enforcement actions by perceived race (residents differ: policies/benchmarks/residents.csv),
# and relative rates of each outcome, so the demo's indices show over- and under-representation.
_ACTION_P = [0.27, 0.09, 0.02, 0.05, 0.07, 0.08, 0.38, 0.04]
_FORCE_RR = [1.6, 0.7, 1.3, 1.0, 1.1, 0.8, 1.0, 1.2]
_STRIP_RR = [1.5, 0.6, 1.4, 1.1, 0.9, 0.7, 1.0, 1.0]
_AGE_P = [0.06, 0.19, 0.29, 0.21, 0.14, 0.08, 0.03]


def synth_enforcement(n: int, seed: int = 17) -> pd.DataFrame:
    """``n`` enforcement-action rows: perceived race, age group, gender, division and outcome flags (Yes/No)."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_CA")
    fake.seed_instance(seed)
    n_people = max(1, int(n / 1.4))
    person = rng.integers(n_people, size=n)
    race_of = rng.choice(len(_RACES), size=n_people, p=_ACTION_P)
    race_i = race_of[person]
    first = np.array([fake.first_name() for _ in range(300)], dtype=object)
    last = np.array([fake.last_name() for _ in range(300)], dtype=object)
    names = first[rng.integers(300, size=n_people)] + " " + last[rng.integers(300, size=n_people)]
    day = rng.integers(365, size=n)
    date = (np.datetime64("2023-01-01", "D") + day.astype("timedelta64[D]")).astype(str).astype(object)
    force = rng.random(n) < 0.08 * np.asarray(_FORCE_RR)[race_i]
    strip = rng.random(n) < 0.04 * np.asarray(_STRIP_RR)[race_i]
    booked = rng.random(n) < np.where(force | strip, 0.9, 0.45)
    yn = np.array(["No", "Yes"], dtype=object)
    df = pd.DataFrame({
        "record_id": _ids("E", np.arange(1, n + 1), 7).astype(object),
        "action_id": _ids("A", 1 + np.sort(rng.integers(max(n // 2, 1), size=n)), 7).astype(object),
        "person_id": _ids("P", person, 7).astype(object),
        "subject_name": names[person],
        "action_date": date,
        "perceived_race": np.asarray(_RACES, dtype=object)[race_i],
        "age_group": np.asarray(_AGE_GROUPS, dtype=object)[rng.choice(len(_AGE_GROUPS), size=n, p=_AGE_P)],
        "gender": _pick(rng, _GENDERS, _GENDER_P, n),
        "division": _pick(rng, _TPS_DIVISIONS, _TPS_DIV_W, n),
        "use_of_force": yn[force.astype(int)],
        "strip_search": yn[strip.astype(int)],
        "booked": yn[booked.astype(int)],
    })
    return df[ENFORCEMENT_COLUMNS]
