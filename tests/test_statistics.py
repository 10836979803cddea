"""The book's intervals against literal references: exact bootstrap distributions on two values,
normal-theory widths on a large sample, Student-t by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pathlib_pw.statistics import bootstrap_interval, t_interval


def test_the_bootstrap_interval_covers_like_a_normal_interval_on_a_large_sample():
    values = np.random.default_rng(1).normal(size=(400, 2))
    values[:, 1] = values[:, 0] + 1.0  # a paired column: the same resamples, so the difference is exact
    mean, low, high = bootstrap_interval(values)
    half = 1.96 * values.std(0, ddof=1) / np.sqrt(400)
    np.testing.assert_allclose(high - low, 2 * half, rtol=0.1)
    np.testing.assert_allclose((high - low)[1], (high - low)[0])


def test_the_median_interval_on_two_and_on_many_values():
    # two values: a resample's median is 0.4, 0.6 or 0.8 (probabilities 1/4, 1/2, 1/4)
    median, low, high = bootstrap_interval(np.array([0.4, 0.8]), statistic="median")
    assert median == pytest.approx(0.6) and low == pytest.approx(0.4) and high == pytest.approx(0.8)
    # a skewed sample: the median's interval holds the sample median and ignores one huge value
    values = np.concatenate([np.random.default_rng(2).uniform(0, 1, 200), [1e6]])
    median, low, high = bootstrap_interval(values, statistic="median")
    assert median == pytest.approx(np.median(values)) and low < median < high and high < 1
    # order statistics: the normal-theory interval of a uniform sample's median is about +-1/sqrt(n)/2 * 1.96
    assert high - low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(201), rel=0.35)


def test_one_value_gives_no_interval_and_bad_arguments_are_named():
    for statistic in ("mean", "median"):
        centre, low, high = bootstrap_interval(np.array([0.5]), statistic=statistic)
        assert centre == 0.5 and np.isnan(low) and np.isnan(high)
    with pytest.raises(ValueError, match="resamples must"):
        bootstrap_interval(np.ones(3), resamples=0)
    with pytest.raises(ValueError, match="statistic must be one of \\['mean', 'median'\\]"):
        bootstrap_interval(np.ones(3), statistic="mode")
    with pytest.raises(ValueError, match="values must have at least one image"):
        bootstrap_interval(np.array([]))


def test_the_t_interval_by_hand():
    values = np.array([[1.0, 2.0, 4.0], [0.5, 0.5, 0.5]])
    mean, low, high = t_interval(values, axis=1)
    half = stats.t.ppf(0.975, 2) * np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3)
    np.testing.assert_allclose([mean[0], low[0], high[0]], [7 / 3, 7 / 3 - half, 7 / 3 + half])
    assert low[1] == high[1] == 0.5
    mean, low, high = t_interval(np.array([3.0]))
    assert mean == 3.0 and np.isnan(low) and np.isnan(high)
