"""Repeats summarized and searched compared with random, checked against hand-computed values."""

import math

import numpy as np
import pytest
from scipy import stats

from adf_service.stats import (
    EXACT_LIMIT,
    Comparison,
    StatsError,
    bootstrap_mean_difference,
    compare,
    mann_whitney_greater,
    summarize,
)

# --- summarize ----------------------------------------------------------------------------


def test_summary_of_three_repeats_by_hand():
    s = summarize([70.0, 74.0, 72.0])
    # mean 72; squared deviations 4, 4, 0 → sample variance 8 / (3 − 1) = 4 → std 2
    assert (s.n, s.best, s.mean, s.std, s.min, s.median) == (3, 74.0, 72.0, 2.0, 70.0, 72.0)
    assert s.to_dict() == {"n": 3, "best": 74.0, "mean": 72.0, "std": 2.0, "min": 70.0, "median": 72.0}


def test_a_single_repeat_has_no_std():
    s = summarize([75.72])
    assert s.n == 1 and s.std is None
    assert s.best == s.mean == s.min == s.median == 75.72


def test_equal_repeats_have_zero_std():
    assert summarize([100.0] * 4).std == 0.0


def test_summarize_refuses_an_empty_group_naming_it():
    with pytest.raises(StatsError, match="random: no values"):
        summarize([], "random")


def test_summarize_refuses_a_nan_naming_its_position():
    with pytest.raises(StatsError, match=r"searched: value \[2\] is nan.*drop failed trials"):
        summarize([99.0, 98.0, float("nan")], "searched")


@pytest.mark.parametrize("bad", [["a", "b"], [[1.0, 2.0], [3.0, 4.0]]])
def test_summarize_refuses_what_is_not_a_flat_list_of_numbers(bad):
    with pytest.raises(StatsError, match="values: expected"):
        summarize(bad)


# --- Mann–Whitney U -------------------------------------------------------------------------


def test_three_searched_above_three_random_give_u_9_and_exact_p_one_in_twenty():
    u, p, method = mann_whitney_greater([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    # every one of the 3·3 pairs favours searched; that ordering is 1 of C(6, 3) = 20 splits
    assert (u, method) == (9.0, "exact")
    assert p == pytest.approx(1 / math.comb(6, 3)) == 0.05


def test_three_searched_below_three_random_give_u_0_and_p_1():
    u, p, method = mann_whitney_greater([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert (u, p, method) == (0.0, 1.0, "exact")


def test_ties_use_the_exact_distribution_of_the_midranks():
    # pooled ranks: 23→1, 25→2, 99→3, 100,100,100→5 each; searched rank sum 5+5+3 = 13,
    # U = 13 − 3·4/2 = 7. Of the 20 ways to pick 3 ranks from {1,2,3,5,5,5}, those with
    # sum ≥ 13 are {5,5,5} and three {5,5,3}: p = 4/20.
    u, p, method = mann_whitney_greater([100.0, 100.0, 99.0], [100.0, 25.0, 23.0])
    assert (u, method) == (7.0, "exact-ties")
    assert p == pytest.approx(4 / 20)


def test_a_single_searched_run_tied_with_random_ones_gets_the_exact_p():
    # U = 3 ties · ½ + 3 wins = 4.5; the single value is any of the 7 pooled values with
    # equal chance, and 4 of them (the 100s) have a rank ≥ its rank: p = 4/7.
    u, p, method = mann_whitney_greater([100.0], [100.0, 100.0, 100.0, 25.0, 25.0, 25.0])
    assert (u, method) == (4.5, "exact-ties")
    assert p == pytest.approx(4 / 7)


def test_one_against_one_can_never_be_significant():
    assert mann_whitney_greater([5.0], [1.0]) == (1.0, 0.5, "exact")


def test_all_equal_values_give_p_1():
    u, p, _ = mann_whitney_greater([100.0] * 3, [100.0] * 3)
    assert (u, p) == (4.5, 1.0)


def test_exact_ties_p_equals_scipys_permutation_test():
    rng = np.random.default_rng(7)
    searched, random = rng.integers(0, 4, size=5).astype(float), rng.integers(0, 4, size=6).astype(float)
    _, p, method = mann_whitney_greater(searched, random)
    expected = stats.mannwhitneyu(
        searched, random, alternative="greater", method=stats.PermutationMethod(n_resamples=10**6)
    ).pvalue
    assert method == "exact-ties"
    assert p == pytest.approx(expected)


def test_many_tied_repeats_fall_back_to_the_normal_approximation():
    searched = [100.0] * 5 + [99.0] * 5
    random = [30.0] * 5 + [25.0] * 5
    assert math.comb(20, 10) > EXACT_LIMIT
    u, p, method = mann_whitney_greater(searched, random)
    assert (u, method) == (100.0, "asymptotic")
    assert p < 1e-3


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_interval_by_hand():
    # a resampled mean of [1, 3] is 1, 2 or 3 with probability ¼, ½, ¼; random is constant 0,
    # so the 2.5 % and 97.5 % quantiles of the difference are 1 and 3.
    assert bootstrap_mean_difference([1.0, 3.0], [0.0, 0.0]) == (1.0, 3.0)


def test_bootstrap_interval_contains_the_observed_difference_and_is_seeded():
    searched, random = [99.0, 100.0, 97.5, 100.0, 98.0, 99.5], [23.0, 100.0, 27.0, 99.0, 25.0, 24.0]
    observed = np.mean(searched) - np.mean(random)
    low, high = bootstrap_mean_difference(searched, random, seed=3)
    assert low < observed < high
    assert bootstrap_mean_difference(searched, random, seed=3) == (low, high)
    assert bootstrap_mean_difference(searched, random, seed=4) != (low, high)
    narrow = bootstrap_mean_difference(searched, random, seed=3, confidence=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_interval_collapses_to_a_point_when_groups_are_constant():
    low, high = bootstrap_mean_difference([0.7] * 4, [0.1] * 5)
    assert low == high == pytest.approx(0.6)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_boot": 0}, "n_boot=0"), ({"n_boot": 2.5}, "n_boot=2.5"), ({"confidence": 1.0}, "confidence=1.0")],
)
def test_bootstrap_refuses_bad_settings(kwargs, match):
    with pytest.raises(StatsError, match=match):
        bootstrap_mean_difference([1.0, 2.0], [0.0, 1.0], **kwargs)


# --- compare --------------------------------------------------------------------------------


def test_compare_gives_summaries_test_and_interval():
    c = compare([4.0, 5.0, 6.0], [1.0, 2.0, 3.0], n_boot=2_000, seed=1)
    assert isinstance(c, Comparison)
    assert (c.searched.mean, c.random.mean, c.mean_difference) == (5.0, 2.0, 3.0)
    assert (c.u_statistic, c.p_value, c.test_method) == (9.0, pytest.approx(0.05), "exact")
    assert c.ci_low < 3.0 < c.ci_high
    assert (c.ci_low, c.ci_high) == bootstrap_mean_difference([4, 5, 6], [1, 2, 3], n_boot=2_000, seed=1)


def test_compare_to_dict_is_one_flat_results_row():
    row = compare([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]).to_dict()
    assert row["searched_n"] == 3 and row["searched_best"] == 6.0 and row["random_std"] == 1.0
    assert row["p_value"] == pytest.approx(0.05) and row["test_method"] == "exact"
    assert {"ci_low", "ci_high", "mean_difference", "u_statistic", "n_boot", "seed", "confidence"} <= set(row)
    assert not any(isinstance(v, dict) for v in row.values())


def test_compare_leaves_out_the_interval_for_a_single_run():
    c = compare([100.0], [23.0, 25.0, 99.0])
    assert c.ci_low is None and c.ci_high is None
    assert c.searched.std is None
    assert c.p_value == pytest.approx(1 / 4)  # the single value is the largest of 4


def test_compare_refuses_an_empty_random_group():
    with pytest.raises(StatsError, match="random: no values"):
        compare([99.0, 100.0], [])
