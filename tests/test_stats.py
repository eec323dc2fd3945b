import numpy as np
import pytest

from common.stats import summarize


def test_mean_ci_brackets_the_mean_and_lies_within_the_data():
    values = [1.0, 2.0, 4.0, 3.0, 5.0]
    s = summarize(values)
    assert s.value == pytest.approx(3.0)
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert min(values) <= s.ci_low < s.value < s.ci_high <= max(values)
    assert s.n == 5


def test_ci_is_reproducible():
    assert summarize([0.3, 0.9, 0.5]) == summarize([0.3, 0.9, 0.5])


def test_constant_and_single_values_have_degenerate_intervals():
    s = summarize([2.0, 2.0, 2.0])
    assert (s.ci_low, s.value, s.ci_high, s.std) == (2.0, 2.0, 2.0, 0.0)
    one = summarize([7.0])
    assert one.n == 1 and one.value == 7.0 and "n=1" in one.format()


def test_max_and_min_aggregate_with_the_range():
    s = summarize([1.0, 5.0, 2.0], stat="max")
    assert (s.value, s.ci_low, s.ci_high) == (5.0, 1.0, 5.0)
    assert summarize([1.0, 5.0, 2.0], stat="min").value == 1.0


def test_empty_input_is_rejected():
    with pytest.raises(ValueError):
        summarize([])
