"""Primary suppression rules: threshold, dominance (n,k) and p% on hand-made contributions."""

from __future__ import annotations

import numpy as np

from release.tables.primary import contributions, dominance_rule, p_percent_rule, threshold_rule


def test_threshold_rule_and_zeros() -> None:
    v = np.array([0.0, 1.0, 4.0, 5.0, np.nan, 30.0])
    assert threshold_rule(v, 5, protect_zeros=False).tolist() == [False, True, True, False, False, False]
    assert threshold_rule(v, 5, protect_zeros=True).tolist() == [True, True, True, False, False, False]


def _one_dim(values: list[float], who: list[str], cells: list[int], n_levels: int = 2, n_top: int = 2):
    codes = np.array(cells, dtype=np.int64).reshape(-1, 1)
    return contributions(codes, (n_levels + 1,), np.array(who), np.array(values, dtype=float), n_top)


def test_contributions_add_a_contributor_up_before_ranking() -> None:
    # Cell 0: firm a has two records (60 + 30), b has 10 -> a's contribution is 90.
    c = _one_dim([60, 30, 10, 5, 5, 5], ["a", "a", "b", "c", "d", "e"], [0, 0, 0, 1, 1, 1])
    assert c.n_contributors.tolist() == [2, 3, 5]
    assert c.total.tolist() == [100, 15, 115]
    assert c.top[0].tolist() == [90, 10]
    assert c.top[2].tolist() == [90, 10]  # the margin ranks contributors across cells


def test_dominance_rule() -> None:
    c = _one_dim([90, 10, 40, 30, 30], ["a", "b", "c", "d", "e"], [0, 0, 1, 1, 1])
    risky = dominance_rule(c, n=1, k=80)
    assert risky.tolist() == [True, False, False]
    assert dominance_rule(c, n=2, k=65).tolist() == [True, True, False]


def test_p_percent_rule() -> None:
    # Cell 0: x1=50, x2=45, rest 5 < 15% of 50 -> risky; cell 1: rest 40 >= 15% of 30.
    c = _one_dim([50, 45, 5, 30, 30, 20, 20], ["a", "b", "c", "d", "e", "f", "g"], [0, 0, 0, 1, 1, 1, 1])
    assert p_percent_rule(c, 15).tolist() == [True, False, False]
