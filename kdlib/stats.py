"""Small statistics for comparing methods over seeds.

The study compares a handful of seeds per method, so all it needs is the mean, the
sample standard deviation and Welch's t-test (unequal variances). The Student-t CDF
comes from the regularized incomplete beta function, evaluated by its continued
fraction (accurate to ~1e-12 for the degrees of freedom that occur here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats as scipy_stats

_EPS = 1e-15
_TINY = 1e-300


def _finite(values: Iterable[float]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count of the finite
    values; NaN/None entries (a run without that metric) are skipped."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(xs) / n
    if n == 1:
        return m, math.nan, 1
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var), n


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError("betainc needs a > 0 and b > 0")
    if not 0.0 <= x <= 1.0:
        raise ValueError("betainc needs 0 <= x <= 1")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast only on one side of the mean; use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def student_t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of a Student-t with ``df`` degrees of freedom."""
    if df <= 0 or math.isnan(t) or math.isnan(df):
        return math.nan
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) of a Student-t with ``df`` degrees of freedom (df may be fractional)."""
    tail = 0.5 * student_t_sf2(t, df)
    return 1.0 - tail if t > 0 else tail


@dataclass(frozen=True)
class WelchResult:
    """Welch's t statistic, its Welch-Satterthwaite degrees of freedom and two-sided p."""

    t: float
    df: float
    p: float
    mean_diff: float  # mean(a) - mean(b)


def welch_ttest(a: Iterable[float], b: Iterable[float]) -> WelchResult:
    """Welch's two-sample t-test of mean(a) != mean(b), unequal variances.

    Seeds of two methods rarely share a variance, hence Welch rather than Student.
    Needs at least two finite values per sample; otherwise, or when both samples have
    zero variance (no spread to judge a difference by), ``t`` and ``p`` are NaN.
    """
    (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
    diff = ma - mb
    if na < 2 or nb < 2:
        return WelchResult(math.nan, math.nan, math.nan, diff)
    va, vb = sa * sa / na, sb * sb / nb
    se2 = va + vb
    if se2 == 0.0:
        return WelchResult(math.nan, math.nan, math.nan, diff)
    t = diff / math.sqrt(se2)
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    return WelchResult(t, df, student_t_sf2(t, df), diff)


def difference_interval(
    a: Iterable[float], b: Iterable[float], level: float = 0.95
) -> tuple[float, float]:
    """Welch's ``level`` confidence interval of mean(a) - mean(b) (the t interval with the
    Welch-Satterthwaite degrees of freedom; quantile from SciPy). NaN bounds with fewer
    than two values in a sample; a zero-width interval when neither sample varies."""
    (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
    if na < 2 or nb < 2:
        return math.nan, math.nan
    va, vb = sa * sa / na, sb * sb / nb
    se2 = va + vb
    diff = ma - mb
    if se2 == 0.0:
        return diff, diff
    df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    return diff - half, diff + half
