"""Risk figures: prosecutor / journalist / marketer, sample uniques, population uniqueness models."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from release.anonymize.assess import measure
from release.anonymize.models import SensitiveSpec
from release.anonymize.risk import expected_inverse_population, population_uniqueness, prosecutor
from release.anonymize.step import Population


def test_prosecutor_figures():
    r = prosecutor(np.array([1, 2, 2, 4, 4, 4, 4.0]), 0.3)
    assert r["highest"] == 1.0 and math.isclose(r["average"], 3 / 7) and math.isclose(r["share_above"], 3 / 7)


def test_expected_inverse_population_matches_closed_form_for_uniques():
    pi = 0.05
    got = expected_inverse_population(np.array([1]), pi)[0]
    assert math.isclose(got, pi / (1 - pi) * math.log(1 / pi), rel_tol=1e-6)
    two = expected_inverse_population(np.array([3]), pi)[0]
    assert pi / 3 <= two <= pi / 2


def test_population_uniqueness_models_and_dankar_rule():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({c: rng.integers(0, 6, 2000) for c in "abcd"})
    sizes = df.groupby(list("abcd")).size().to_numpy()
    small = population_uniqueness(sizes.astype(float), 200_000)
    assert small["sampling_fraction"] == 0.01 and small["dankar_model"] in ("pitman", "zayatz")
    est = small["estimates"]
    assert all(v is None or v >= 0 for v in est.values())
    assert 0 <= small["uniques"] <= 200_000
    big = population_uniqueness(sizes.astype(float), 4000)
    assert big["dankar_model"] in ("snb", "zayatz")
    none = population_uniqueness(np.array([5.0, 7.0]), 100)
    assert none["uniques"] == 0 and none["dankar_model"].startswith("none")


def test_t_closeness_and_recursive_figures():
    df = pd.DataFrame({"q": ["a"] * 4 + ["b"] * 4, "s": ["1", "1", "1", "2", "2", "2", "2", "1"]})
    fig = measure(df, ["q"], {}, {"s": SensitiveSpec(t=1.0, l=2, model="recursive", c=2)}, Population(sampling_fraction=0.5), 0.2)
    # global (.5, .5); class a (.75, .25): equal-distance EMD = .25
    assert fig["t"]["s"] == 0.25
    assert fig["l"]["s"]["recursive_ok"] is False  # 3 < 2 * 1 fails
    assert fig["risk"]["journalist"]["highest"] < fig["risk"]["prosecutor"]["highest"]
    assert "population_uniqueness" in fig
    ordered = measure(df, ["q"], {}, {"s": SensitiveSpec(t=1.0, distance="ordered")}, None, 0.2)
    assert ordered["t"]["s"] == 0.25
