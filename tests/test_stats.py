import numpy as np
import pytest
from scipy import stats

from common.stats import summarize


def test_few_seeds_get_a_student_t_interval_wider_than_their_range():
    values = [1.0, 2.0, 4.0]
    s = summarize(values)
    half = stats.t.ppf(0.975, df=2) * np.std(values, ddof=1) / np.sqrt(3)  # 4.30 · s / √3
    assert (s.method, s.n) == ("t", 3)
    assert (s.ci_low, s.ci_high) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert s.ci_low < min(values) and s.ci_high > max(values)  # at n = 3 the honest interval is wide
    assert "95% t-interval" in s.format() and "(n=3)" in s.format()


def test_from_ten_seeds_the_mean_gets_a_bootstrap_interval_inside_the_data():
    values = np.arange(12, dtype=float) ** 1.5
    s = summarize(values)
    assert s.method == "bootstrap" and "95% bootstrap CI" in s.format()
    assert values.min() <= s.ci_low < s.value < s.ci_high <= values.max()


def test_the_t_interval_covers_the_true_mean_95_percent_of_the_time_at_three_seeds():
    rng = np.random.default_rng(0)
    draws = rng.normal(10.0, 2.0, size=(4000, 3))
    covered = [s.ci_low <= 10.0 <= s.ci_high for s in map(summarize, draws)]
    assert 0.94 <= np.mean(covered) <= 0.96
    # the range of 3 seeds (what a percentile bootstrap returns at n = 3) covers it only 75% of the time
    assert np.mean((draws.min(1) <= 10.0) & (10.0 <= draws.max(1))) == pytest.approx(0.75, abs=0.02)


def test_ci_is_reproducible():
    assert summarize([0.3, 0.9, 0.5]) == summarize([0.3, 0.9, 0.5])


def test_constant_and_single_values_have_degenerate_intervals():
    s = summarize([2.0, 2.0, 2.0])
    assert (s.ci_low, s.value, s.ci_high, s.std) == (2.0, 2.0, 2.0, 0.0)
    one = summarize([7.0])
    assert one.n == 1 and one.value == 7.0 and "n=1" in one.format()


def test_max_and_min_aggregate_with_the_range():
    s = summarize([1.0, 5.0, 2.0], stat="max")
    assert (s.value, s.ci_low, s.ci_high, s.method) == (5.0, 1.0, 5.0, "range")
    assert s.format() == "max 5 [range 1, 5] (n=3)"
    assert summarize([1.0, 5.0, 2.0], stat="min").value == 1.0


def test_empty_input_is_rejected():
    with pytest.raises(ValueError):
        summarize([])
