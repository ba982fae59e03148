"""Decisions across seeds with a stated error rate: Student's t quantiles (scipy), the interval
of a mean and the Welch-Satterthwaite interval of a difference (or any signed sum) of means, the
margin every verdict decides by, and how a difference and its interval are written.

How a comparing verdict is made (one home for it, :func:`compare`): a difference decides only
when it has an interval, that is when every net it compares has at least ``MIN_SEEDS`` seeds
with some spread between them, and the interval lies on one side of the margin. Each such
verdict is a one-sided decision with an error rate of at most 2.5% when the truth sits exactly on
the margin (less elsewhere), per ledger row: a row that decides when any one of k tests does (a
shortcut variant of k, either of two nets) makes each at the k-fold level (:func:`familywise`,
Bonferroni). No correction for the number of rows is made.
Fewer seeds never decide: one seed cannot show its own seed-to-seed spread, and a band borrowed
from another setting would not hold its coverage there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not decided"
# Confidence level of every interval; each side of it is a 2.5% one-sided decision.
LEVEL = 0.95
# Error differences (in error fraction) up to this count as no difference.
MARGIN = 0.01
# Seeds (runs) per net that a deciding interval needs. With two, Welch's interval has one or two
# degrees of freedom and its width rests on two numbers per net; three is the least the
# calibration test (tests/test_stats.py) shows to keep the stated error and gain power.
MIN_SEEDS = 3
# A net whose seeds all end at exactly the same error of 0 or 1 (every image right, or every one
# wrong) has nothing to spread: its std is taken as this (0.1 point) rather than 0, so that the
# interval keeps a width. Equal values anywhere else mean duplicated runs: no interval.
RESOLUTION = 0.001


def t_quantile(dof: float, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` (real) degrees of freedom."""
    return float(scipy_stats.t.ppf(0.5 + level / 2, dof))


def t975(dof: float) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom."""
    return t_quantile(dof, 0.95)


def _clean(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _variance(values: np.ndarray, resolution: float = 0.0) -> float:
    """The variance over seeds. Values equal to rounding (relative 1e-9) have none; then a
    measure with a ``resolution`` (a count's step) gets that, a group all at 0 or all at 1 gets
    :data:`RESOLUTION`, and any other gets 0 (duplicated runs)."""
    var = float(values.var(ddof=1))
    if var > (1e-9 * max(1e-12, float(np.abs(values).max()))) ** 2:
        return var
    if resolution > 0:
        return resolution**2
    return RESOLUTION**2 if values[0] in (0.0, 1.0) else 0.0


def no_interval(*groups, min_seeds: int = MIN_SEEDS, resolution: float = 0.0) -> str:
    """Why these groups (one per net) give no deciding interval, or "" when they do."""
    groups = [_clean(g) for g in groups]
    fewest = min((len(g) for g in groups), default=0)
    if fewest == 0:
        return "a net has no finished run"
    if fewest == 1:
        return f"one seed per net: no interval (needs {min_seeds} seeds per net)"
    if fewest < min_seeds:
        return f"{fewest} seeds per net: too few to decide (needs {min_seeds})"
    if any(_variance(g, resolution) == 0 for g in groups):
        return "a net's seeds end at identical values (duplicated runs?): no interval"
    return ""


def familywise(tests: int) -> float:
    """The confidence level of each of ``tests`` intervals of a row that decides when any one of
    them does (Bonferroni), so that the row keeps the error of one :data:`LEVEL` interval."""
    return 1 - (1 - LEVEL) / max(1, tests)


def signed_sum(
    groups: Sequence,
    signs: Sequence[float],
    min_seeds: int = MIN_SEEDS,
    level: float = LEVEL,
    resolution: float = 0.0,
) -> tuple[float, tuple[float, float] | None]:
    """sum(sign * mean(group)) over independent groups, and its ``level`` Welch-Satterthwaite t
    interval; None when :func:`no_interval` gives a reason (too few seeds, no spread)."""
    groups = [_clean(g) for g in groups]
    if any(len(g) == 0 for g in groups):
        return math.nan, None
    value = float(sum(s * g.mean() for g, s in zip(groups, signs, strict=True)))
    if no_interval(*groups, min_seeds=min_seeds, resolution=resolution):
        return value, None
    parts = [_variance(g, resolution) / len(g) for g in groups]
    var = sum(parts)
    dof = var**2 / sum(p**2 / (len(g) - 1) for p, g in zip(parts, groups, strict=True))
    half = t_quantile(dof, level) * math.sqrt(var)
    return value, (value - half, value + half)


def difference(
    a, b, min_seeds: int = MIN_SEEDS, level: float = LEVEL, resolution: float = 0.0
) -> tuple[float, tuple[float, float] | None]:
    """mean(a) - mean(b), and its ``level`` Welch t interval (None with fewer than
    ``min_seeds`` values on a side, or no spread on either)."""
    return signed_sum([a, b], [1, -1], min_seeds, level, resolution)


def mean_interval(
    values, min_seeds: int = 2, level: float = LEVEL
) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``values`` and its ``level`` t interval (None with fewer than ``min_seeds``
    values or no spread; the default of 2 is for display, deciding rules pass MIN_SEEDS)."""
    values = _clean(values)
    if len(values) == 0:
        return math.nan, None
    mean = float(values.mean())
    if no_interval(values, min_seeds=min_seeds):
        return mean, None
    half = t_quantile(len(values) - 1, level) * math.sqrt(_variance(values) / len(values))
    return mean, (mean - half, mean + half)


def compare(diff: float, ci: tuple[float, float] | None, margin: float) -> bool | None:
    """Is ``diff`` above ``margin``? True when its interval lies above it, False when the
    interval lies at or below it, None otherwise and without an interval (not decided)."""
    if ci is None or math.isnan(diff):
        return None
    if ci[0] > margin:
        return True
    if ci[1] <= margin:
        return False
    return None


def exceeds(diff: float, ci: tuple[float, float] | None, margin: float) -> bool:
    """Is ``diff`` clearly above ``margin`` (its interval's lower end above it)?"""
    return compare(diff, ci, margin) is True


def negate(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """The interval of minus the difference."""
    return None if ci is None else (-ci[1], -ci[0])


def points(x: float) -> str:
    """An error difference in points, signed: ``+1.2 points``."""
    return f"{100 * x:+.1f} points"


def interval_or_why(ci: tuple[float, float] | None, *groups) -> str:
    """:func:`interval` where there is one, else why not (:func:`no_interval` of ``groups``)."""
    why = no_interval(*groups) if ci is None else ""
    return interval(ci) if ci is not None else (f" ({why})" if why else "")


def interval(ci: tuple[float, float] | None, missing: str = "", level: float = LEVEL) -> str:
    """A ``level`` interval of an error difference in points, `` (95% interval -0.4 to +2.1)``;
    ``missing`` where there is none."""
    if ci is None:
        return missing
    return f" ({100 * level:g}% interval {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})"


@dataclass(frozen=True)
class Reading:
    """A rule's answer: its verdict, what was measured (in words) and why (not decided)."""

    verdict: str
    measured: str
    why: str = ""


def reading(found: bool | None, measured: str, why: str = "", against: str = "") -> Reading:
    """The :class:`Reading` of a :func:`compare` result: supported (True), contradicted (False,
    with ``against`` as its why), not decided (None, with ``why``)."""
    if found is None:
        return Reading(UNDECIDED, measured, why)
    return Reading(SUPPORTED, measured) if found else Reading(CONTRADICTED, measured, against)
