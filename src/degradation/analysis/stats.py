"""Intervals for comparisons across seeds: Student's t quantile, a mean's interval and Welch's
interval for a difference of means (no scipy needed); the margins every verdict decides by, and
how a difference and its interval are written."""

from __future__ import annotations

import math

import numpy as np


def t975(dof: float) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom: exact at 1 and 2,
    interpolated in log between them, and a four-term Cornish-Fisher expansion in 1/dof from 2
    on (within 1% of the exact value)."""
    one, two = math.tan(0.475 * math.pi), 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    if dof <= 1:
        return one
    if dof <= 2:
        return math.exp(math.log(one) + (dof - 1) * (math.log(two) - math.log(one)))
    z, v = 1.959963984540054, float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def mean_interval(values) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``values`` and its 95% t interval (None with fewer than two values)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, None
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    half = t975(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, (mean - half, mean + half)


def difference(a, b) -> tuple[float, tuple[float, float] | None]:
    """mean(a) - mean(b), and its 95% Welch t interval when both have two or more values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, None
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, (diff, diff)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t975(dof) * se
    return diff, (diff - half, diff + half)


# Error differences (in error fraction) up to this count as no difference.
MARGIN = 0.01
# With one run per net there is no interval; an error difference must then clear a margin by
# this much to count (the largest std over seeds of a net's final training error in
# results/quick_seeds, 3 seeds of the quick preset, is 2.4 points).
SEED_SPREAD = 0.03


def compare(
    diff: float, ci: tuple[float, float] | None, margin: float, spread: float = SEED_SPREAD
) -> bool | None:
    """Is ``diff`` above ``margin``? True or False when the interval lies on one side of it;
    without an interval (one value), when the value is more than ``spread`` away from it; None
    otherwise (not decided)."""
    low, high = ci if ci is not None else (diff - spread, diff + spread)
    if low > margin:
        return True
    if high <= margin:
        return False
    return None


def exceeds(
    diff: float, ci: tuple[float, float] | None, margin: float, spread: float = SEED_SPREAD
) -> bool:
    """Is ``diff`` clearly above ``margin``: its interval's lower end, or with one value (no
    interval) the value itself less ``spread`` (the seed-to-seed spread one value cannot show)?"""
    return (ci[0] if ci is not None else diff - spread) > margin


def negate(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """The interval of minus the difference."""
    return None if ci is None else (-ci[1], -ci[0])


def points(x: float) -> str:
    """An error difference in points, signed: ``+1.2 points``."""
    return f"{100 * x:+.1f} points"


def interval(ci: tuple[float, float] | None, missing: str = "") -> str:
    """A 95% interval of an error difference in points, `` (95% interval -0.4 to +2.1)``;
    ``missing`` where there is none (one value)."""
    return missing if ci is None else f" (95% interval {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})"
