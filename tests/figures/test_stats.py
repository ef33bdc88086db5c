"""The statistics the figures mark (kdlib.stats): Welch's test and interval, on SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from kdlib.stats import difference_interval, mean_std, welch_ttest


def test_welch_ttest_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for na, nb in ((2, 2), (3, 5), (7, 4)):
        a, b = rng.normal(90, 0.3, na), rng.normal(89.5, 0.8, nb)
        r, ref = welch_ttest(a, b), scipy.stats.ttest_ind(a, b, equal_var=False)
        assert (r.t, r.df, r.p) == (ref.statistic, ref.df, ref.pvalue)


def test_difference_interval_is_the_welch_t_interval() -> None:
    # Computed here from its formula, independently of SciPy's interval code.
    a, b = [90.1, 90.5, 89.8], [89.0, 89.9, 89.2, 89.4]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = np.mean(a) - np.mean(b)
    lo, hi = difference_interval(a, b)
    assert lo == pytest.approx(diff - half, abs=1e-12) and hi == pytest.approx(
        diff + half, abs=1e-12
    )
    assert difference_interval([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5)  # no spread at all
    assert all(math.isnan(x) for x in difference_interval([1.0], [0.5, 0.7]))


def test_welch_ttest_known_value() -> None:
    # Welch's test on two samples of 15 with unequal variances (the worked example of
    # the Wikipedia article on Welch's t-test): t = -2.46, df = 25.0, p = 0.021.
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    r = welch_ttest(a, b)
    assert r.t == pytest.approx(-2.4553564, abs=1e-6)
    assert r.df == pytest.approx(24.98853, abs=1e-4)
    assert r.p == pytest.approx(0.021378, abs=1e-5)
    assert welch_ttest(b, a).p == pytest.approx(r.p)
    # hand-checked: t = -3/sqrt(2.5), df = 6.25/1.0625
    r = welch_ttest([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert r.t == pytest.approx(-3 / math.sqrt(2.5)) and r.df == pytest.approx(6.25 / 1.0625)


def test_welch_ttest_degenerate_samples_are_nan() -> None:
    assert math.isnan(welch_ttest([90.0], [89.0, 89.5]).p)  # one seed: no spread to judge
    assert math.isnan(welch_ttest([90.0, 90.0], [89.0, 89.0]).p)  # zero variance
    assert math.isnan(welch_ttest([90.0, None, float("nan")], [89.0, 89.5]).p)
    assert mean_std([1.0, None, float("nan"), 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert math.isnan(mean_std([]).__getitem__(0))
