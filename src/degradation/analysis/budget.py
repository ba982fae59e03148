"""Does the gap persist with more training? Final training error against the training budget.

A sweep over ``schedule.budget`` trains every net for several budgets, each with the paper's
learning-rate drops at 50% and 75% of it. Per net (family x depth) and budget: the final
training error over seeds with its 95% t interval; the gaps between the deep and the shallow
plain net, and between the deep plain net and its residual twin, per budget. The end state is
read from the budget axis, not from a slope: a curve is flat after its last drop whatever the
net would do with more training.

Rule (claim 2, deep minus shallow plain; the same reading for the residual fix, plain minus
residual at the deep depth), with the budgets B_1 < ... < B_k, G_B the gap at budget B and
S = shallow(B_k) - shallow(B_k-1):

- supported: S's interval lies above -``STOPPED`` (the shallow net has stopped improving with
  budget), G at B_k lies above the margin, and G(B_k) - G(B_k-1) lies above -``STOPPED`` (the
  gap has stopped shrinking);
- contradicted: the shallow net has stopped improving and G at B_k lies below the margin;
- otherwise not decided, naming the condition that failed.

Budgets less than ``MIN_FACTOR`` apart anywhere on the axis leave both readings not decided
("budgets too close"): a short last step shows a small change whatever the trend per doubling.

Each condition is one-sided at 97.5% (the lower or upper end of a 95% interval); a condition
that needs an interval is not met without one (fewer than three seeds per net, or no spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from degradation.analysis.base import Context, Section
from degradation.analysis.select import is_2015_design
from degradation.analysis.stats import (
    CONTRADICTED,
    MARGIN,
    SUPPORTED,
    UNDECIDED,
    Reading,
    interval,
    mean_interval,
    no_interval,
    points,
    signed_sum,
)

TITLE = "Does the gap persist with more training? (training budget)"
NEEDS = "finished plain nets of two depths (and residual twins) at two or more budgets"
PRESET = "budget_quick"
# "Stopped improving" / "stopped shrinking": a change with doubled budget above -1 point.
STOPPED = 0.01
# Consecutive budgets must differ by at least this factor: a short last step (2000 -> 2200)
# shows a small change whatever the trend per doubling is, and would pass for an end state.
MIN_FACTOR = 2


def too_close(budgets: list[int]) -> tuple[int, int] | None:
    """The first pair of consecutive budgets less than :data:`MIN_FACTOR` apart (None if none)."""
    for low, high in pairwise(budgets):
        if high < MIN_FACTOR * low:
            return low, high
    return None


def budget_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished plain and residual runs of the paper's design that a budget reading uses."""
    if not {"status", "family", "depth", "max_steps", "final_train_error"} <= set(runs):
        return runs.iloc[0:0].assign(family=[], depth=[], max_steps=[], final_train_error=[])
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    done = done[done["family"].isin(["plain", "resnet"])]
    paper = is_2015_design(done)
    if paper.any():
        done = done[paper]
    if "shortcut" in done and (done["shortcut"] == "A").any():
        done = done[(done["family"] != "resnet") | (done["shortcut"] == "A")]
    return done


def errors(runs: pd.DataFrame, family: str, depth: int, budget: int) -> np.ndarray:
    """The final training errors (one per seed) of one net at one budget."""
    rows = runs[(runs["family"] == family) & (runs["depth"] == depth)]
    return rows.loc[rows["max_steps"] == budget, "final_train_error"].to_numpy(float)


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per net and budget: seeds, mean final training error and its 95% interval."""
    rows = []
    for (fam, depth, budget), group in budget_runs(runs).groupby(["family", "depth", "max_steps"]):
        mean, ci = mean_interval(group["final_train_error"])
        rows.append({
            "family": fam, "depth": int(depth), "budget": int(budget), "seeds": len(group),
            "train_error": mean, "low": ci[0] if ci else math.nan,
            "high": ci[1] if ci else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


@dataclass
class Gap:
    """One gap (``minuend`` minus ``subtrahend`` net) per budget, with intervals."""

    name: str
    budgets: list[int]
    values: list[float]
    intervals: list[tuple[float, float] | None]


def gap(runs: pd.DataFrame, name: str, first: tuple, second: tuple, budgets: list[int]) -> Gap:
    """``first`` net's final training error minus ``second``'s ((family, depth) each), per
    budget."""
    values, cis = [], []
    for b in budgets:
        value, ci = signed_sum([errors(runs, *first, b), errors(runs, *second, b)], [1, -1])
        values.append(value)
        cis.append(ci)
    return Gap(name, budgets, values, cis)


def _above(ci: tuple[float, float] | None, level: float) -> bool:
    return ci is not None and ci[0] > level


def _below(ci: tuple[float, float] | None, level: float) -> bool:
    return ci is not None and ci[1] < level


def depths(runs: pd.DataFrame) -> tuple[int, int] | None:
    """The shallowest and the deepest plain depth with two or more budgets (None if none)."""
    plain = budget_runs(runs)
    plain = plain[plain["family"] == "plain"]
    counts = plain.groupby("depth")["max_steps"].nunique()
    found = sorted(int(d) for d in counts[counts >= 2].index)
    return (found[0], found[-1]) if len(found) >= 2 else None


def read(runs: pd.DataFrame, residual_fix: bool = False, margin: float = MARGIN) -> Reading:
    """Claim 2's reading (deep minus shallow plain) or, with ``residual_fix``, the residual
    fix's (deep plain minus deep residual), by the rule of this module."""
    done = budget_runs(runs)
    budgets = sorted(int(b) for b in done["max_steps"].unique())
    if not budgets:
        return Reading(UNDECIDED, "-", "no finished plain or residual runs")
    if len(budgets) < 2:
        return Reading(UNDECIDED, "one budget", f"one budget (run experiment={PRESET})")
    close = too_close(budgets)
    if close is not None:
        return Reading(
            UNDECIDED,
            "budgets " + ", ".join(map(str, budgets)),
            f"budgets too close ({close[0]}, {close[1]}): each must be at least {MIN_FACTOR}x "
            "the one before",
        )
    pair = depths(done)
    if pair is None:
        return Reading(UNDECIDED, "-", "needs plain nets of two depths at two or more budgets")
    shallow, deep = pair
    last, before = budgets[-1], budgets[-2]
    if residual_fix:
        g = gap(done, "plain minus residual", ("plain", deep), ("resnet", deep), budgets)
        stop_net = ("resnet", deep)
        label = f"plain-{deep} minus resnet-{deep}"
    else:
        g = gap(done, "deep minus shallow", ("plain", deep), ("plain", shallow), budgets)
        stop_net = ("plain", shallow)
        label = f"plain-{deep} minus plain-{shallow}"
    if any(len(errors(done, *net, b)) == 0 for net in [("plain", deep), stop_net] for b in
           (last, before)):  # fmt: skip
        return Reading(
            UNDECIDED, "-", f"needs {label.split(' minus ')[1]} at budgets {before} and {last}"
        )
    stop, stop_ci = signed_sum(
        [errors(done, *stop_net, last), errors(done, *stop_net, before)], [1, -1]
    )
    a, b = [errors(done, "plain", deep, x) for x in (last, before)]
    c, d = [errors(done, *(("resnet", deep) if residual_fix else ("plain", shallow)), x)
            for x in (last, before)]  # fmt: skip
    trend, trend_ci = signed_sum([a, c, b, d], [1, -1, -1, 1])
    end, end_ci = g.values[-1], g.intervals[-1]
    net_name = f"{stop_net[0]}-{stop_net[1]}"
    measured = (
        f"{label} at {last} iterations: {points(end)}{interval(end_ci)}; change of the gap from "
        f"{before}: {points(trend)}{interval(trend_ci)}; {net_name} from {before} to {last}: "
        f"{points(stop)}{interval(stop_ci)}"
    )
    stopped = _above(stop_ci, -STOPPED)
    if stopped and _above(end_ci, margin) and _above(trend_ci, -STOPPED):
        return Reading(SUPPORTED, measured)
    if stopped and _below(end_ci, margin):
        return Reading(CONTRADICTED, measured)
    if stop_ci is None or end_ci is None or trend_ci is None:
        groups = [
            errors(done, *net, x) for net in [("plain", deep), stop_net] for x in (last, before)
        ]
        why = no_interval(*groups) or "no interval"
    elif not stopped:
        why = f"{net_name} still improves with budget (train a longer budget)"
    elif not _above(end_ci, margin):
        why = f"the gap at {last} iterations is not clear of the {100 * margin:.0f}-point margin"
    else:
        why = f"the gap may still be shrinking from {before} to {last} iterations"
    return Reading(UNDECIDED, measured, why)


def figure(stats: pd.DataFrame, gaps: list[Gap], margin: float = MARGIN) -> Figure:
    """Left: final training error against budget (log2), one line per net, 95% intervals.
    Right: the gaps against budget."""
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for (fam, depth), rows in stats.groupby(["family", "depth"]):
        rows = rows.sort_values("budget")
        err = [
            100 * (rows["train_error"] - rows["low"]),
            100 * (rows["high"] - rows["train_error"]),
        ]
        left.errorbar(
            rows["budget"], 100 * rows["train_error"], yerr=np.nan_to_num(err), capsize=3,
            label=f"{fam}-{depth}", linestyle="--" if fam == "plain" else "-", marker="o",
        )  # fmt: skip
    for g in gaps:
        low = [v - ci[0] if ci else 0 for v, ci in zip(g.values, g.intervals, strict=True)]
        high = [ci[1] - v if ci else 0 for v, ci in zip(g.values, g.intervals, strict=True)]
        right.errorbar(g.budgets, 100 * np.array(g.values), yerr=[100 * np.array(low),
                       100 * np.array(high)], capsize=3, marker="o", label=g.name)  # fmt: skip
    right.axhline(100 * margin, color="0.5", linewidth=0.8, linestyle=":")
    right.axhline(0, color="0.3", linewidth=0.8)
    budgets = sorted(int(b) for b in stats["budget"].unique())
    for ax, ylabel in ((left, "final training error (%)"), (right, "gap (points)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])  # the budgets run, not powers of 2
        ax.minorticks_off()
        ax.set_xlabel("training budget (iterations)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    left.set_title("final training error, 95% intervals over seeds")
    right.set_title(f"gaps; dotted: the {100 * margin:.0f}-point margin")
    fig.tight_layout()
    return fig


def section(ctx: Context) -> Section:
    """The table (also budget.csv), the figure and both readings."""
    stats = table(ctx.runs)
    pair = depths(ctx.runs)
    if stats.empty or stats["budget"].nunique() < 2 or pair is None:
        return Section(TITLE, answered=False, skipped=[f"needs {NEEDS} (experiment={PRESET})"])
    ctx.save_table(stats, "budget")
    shallow, deep = pair
    done = budget_runs(ctx.runs)
    budgets = sorted(int(b) for b in stats["budget"].unique())
    gaps = [gap(done, f"plain-{deep} minus plain-{shallow}", ("plain", deep), ("plain", shallow),
                budgets)]  # fmt: skip
    if ((done["family"] == "resnet") & (done["depth"] == deep)).any():
        gaps.append(gap(done, f"plain-{deep} minus resnet-{deep}", ("plain", deep),
                        ("resnet", deep), budgets))  # fmt: skip
    link = ctx.save_figure(figure(stats, gaps), "budget")
    shown = stats.assign(
        net=stats["family"] + "-" + stats["depth"].astype(str),
        **{
            "final train error (%)": [
                f"{100 * m:.2f}"
                + ("" if math.isnan(lo) else f" ({100 * lo:.2f} to {100 * hi:.2f})")
                for m, lo, hi in zip(stats["train_error"], stats["low"], stats["high"], strict=True)
            ]
        },
    ).pivot(index="budget", columns="net", values="final train error (%)")
    lines = [link, "", shown.to_markdown(), ""]
    for name, reading in (
        ("End state (claim 2)", read(ctx.runs)),
        ("Residual fix across budgets", read(ctx.runs, residual_fix=True)),
    ):
        why = f" ({reading.why})" if reading.why else ""
        lines.append(f"- {name}: **{reading.verdict}**{why}. {reading.measured}.")
    return Section(TITLE, lines)
