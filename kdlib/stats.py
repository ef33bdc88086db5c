"""Small statistics for comparing methods over seeds, on SciPy.

The study compares a handful of seeds per method, so all it needs is the mean, the
sample standard deviation, Welch's t-test (unequal variances) and Welch's confidence
interval of a difference of means. SciPy computes the test and the t quantile; this
module only adds what the study's tables need around it: metrics that a run lacks
(None, NaN) are skipped, and a sample too small to judge gives NaN rather than an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


def _finite(values: Iterable[float]) -> np.ndarray:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count of the finite
    values; NaN/None entries (a run without that metric) are skipped."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    std = float(np.std(xs, ddof=1)) if n > 1 else math.nan
    return float(np.mean(xs)), std, n


@dataclass(frozen=True)
class WelchResult:
    """Welch's t statistic, its Welch-Satterthwaite degrees of freedom and two-sided p."""

    t: float
    df: float
    p: float
    mean_diff: float  # mean(a) - mean(b)


def _welch(a: Iterable[float], b: Iterable[float]):
    """SciPy's Welch test of the finite values, or None where it cannot judge: fewer than
    two values in a sample, or no spread in either (a zero standard error)."""
    xa, xb = _finite(a), _finite(b)
    if len(xa) < 2 or len(xb) < 2:
        return xa, xb, None
    if np.var(xa, ddof=1) / len(xa) + np.var(xb, ddof=1) / len(xb) == 0.0:
        return xa, xb, None
    return xa, xb, scipy_stats.ttest_ind(xa, xb, equal_var=False)


def welch_ttest(a: Iterable[float], b: Iterable[float]) -> WelchResult:
    """Welch's two-sample t-test of mean(a) != mean(b), unequal variances.

    Seeds of two methods rarely share a variance, hence Welch rather than Student.
    Needs at least two finite values per sample; otherwise, or when both samples have
    zero variance (no spread to judge a difference by), ``t`` and ``p`` are NaN.
    """
    xa, xb, res = _welch(a, b)
    diff = float(np.mean(xa) - np.mean(xb)) if len(xa) and len(xb) else math.nan
    if res is None:
        return WelchResult(math.nan, math.nan, math.nan, diff)
    return WelchResult(float(res.statistic), float(res.df), float(res.pvalue), diff)


def difference_interval(
    a: Iterable[float], b: Iterable[float], level: float = 0.95
) -> tuple[float, float]:
    """Welch's ``level`` confidence interval of mean(a) - mean(b) (the t interval with the
    Welch-Satterthwaite degrees of freedom). NaN bounds with fewer than two values in a
    sample; a zero-width interval when neither sample varies."""
    xa, xb, res = _welch(a, b)
    if len(xa) < 2 or len(xb) < 2:
        return math.nan, math.nan
    if res is None:  # no spread at all: the difference is what it is
        diff = float(np.mean(xa) - np.mean(xb))
        return diff, diff
    ci = res.confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)
