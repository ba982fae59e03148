"""The claims decided by the sweep's runs themselves (their final errors, metrics and final
weights): degradation and the residual fix, the end state, vanishing gradients, convergence
speed, the generalization gap and the size of residual functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from degradation.analysis import budget, convergence, gradients, responses
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    ONE_SEED,
    SUPPORTED,
    UNDECIDED,
    Finding,
    Sweep,
    claim,
)
from degradation.analysis.gradients import VANISH_RATIO
from degradation.analysis.stats import MARGIN, SEED_SPREAD, compare, difference, interval, points

FLAT = 0.01  # flattened: fitted change over the final 20% below 1 point
SPEED_MARGIN = 0.1  # "faster" needs 10% of the run fewer iterations to the threshold
RESPONSE_MARGIN = 0.05  # residual median layer response at least 5% below the plain one
STRADDLES = "the interval (or one seed's spread) straddles the margin: more seeds"
FLIPPED = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}


def depth_values(runs: pd.DataFrame, family: str, column: str) -> dict[int, np.ndarray]:
    """``column`` of the ``family`` runs, per depth."""
    rows = runs[(runs["family"] == family) & runs[column].notna()]
    return {int(d): g[column].to_numpy(float) for d, g in rows.groupby("depth")}


def rises(diff: float, ci: tuple[float, float] | None) -> str:
    """supported when the rise exceeds the margin, contradicted when it stays within it (with
    one seed, by more than a seed's spread either way), not decided otherwise."""
    return {True: SUPPORTED, False: CONTRADICTED, None: UNDECIDED}[compare(diff, ci, MARGIN)]


def depth_rise(runs: pd.DataFrame, family: str) -> tuple[str, str] | None:
    """Whether the deepest ``family`` net ends with a higher training error than the shallowest
    (:func:`rises`) and that difference in words; None without two depths."""
    by_depth = depth_values(runs, family, "final_train_error")
    if len(by_depth) < 2:
        return None
    shallow, deep = min(by_depth), max(by_depth)
    diff, ci = difference(by_depth[deep], by_depth[shallow])
    text = f"{family}-{deep} minus {family}-{shallow}: {points(diff)}{interval(ci, ONE_SEED)}"
    return rises(diff, ci), text


def depth_claim(runs: pd.DataFrame, family: str, degrades: bool, needs: str) -> Finding:
    """The finding on 'deeper ``family`` nets train worse' (``degrades``) or '... do not'."""
    found = depth_rise(runs, family)
    if found is None:
        return Finding(why=needs)
    verdict, measured = found
    verdict = verdict if degrades else FLIPPED.get(verdict, UNDECIDED)
    return Finding(verdict, measured, STRADDLES if verdict == UNDECIDED else "")


def final_slope(metrics: pd.DataFrame, run: str, window: float = 0.2) -> float:
    """Fitted change of the batch training error over the final ``window`` of a run."""
    rows = metrics[(metrics["run"] == run) & metrics["train_error"].notna()]
    tail = rows[rows["step"] >= rows["step"].max() * (1 - window)]
    if len(tail) < 10:
        return math.nan
    slope = np.polyfit(tail["step"].to_numpy(float), tail["train_error"].to_numpy(float), 1)[0]
    return float(slope * (tail["step"].max() - tail["step"].min()))


@claim(
    1,
    "Deeper plain nets reach a higher training error (degradation)",
    "paper, §4.1",
    figure="fig6.png",
)
def degradation(s: Sweep) -> Finding:
    return depth_claim(s.done, "plain", True, "needs finished plain nets of two depths")


@claim(
    2,
    "It is an end state, not slower learning: as training grows, the shallow plain net stops "
    "improving and the deep plain net stays above it",
    "paper, §4.1 (footnote 3)",
    figure="budget.png",
    definition="End state (training budget): with G_B the deep minus the shallow plain net's "
    "final training error at budget B and S the shallow net's change from the second-longest "
    f"to the longest budget, supported when S lies above -{100 * budget.STOPPED:.0f} point (it "
    "has stopped improving), G at the longest budget above the margin and G's change from the "
    f"second-longest budget above -{100 * budget.STOPPED:.0f} point (it has stopped shrinking), "
    "each by its 95% interval over seeds; contradicted when S has stopped and G lies below the "
    "margin; a sweep of one budget does not decide (a flat curve after a learning-rate drop is "
    "the schedule's, not an end state).",
)
def end_state(s: Sweep) -> Finding:
    reading = budget.read(s.all_done)
    return Finding(reading.verdict, reading.measured, reading.why)


@claim(3, "Residual nets of the same depths do not degrade", "paper, §4.2", figure="fig6.png")
def residual(s: Sweep) -> Finding:
    return depth_claim(s.done, "resnet", False, "needs finished residual nets of two depths")


@claim(
    4,
    "The deep plain nets' gradients vanish during training",
    "common explanation (the paper, §4.1, argues BN keeps them healthy)",
    figure="grad_profiles.png",
    definition=f"Vanished gradient: a conv layer's gradient norm below {VANISH_RATIO:g} times "
    "the largest layer's at the same logged step.",
)
def vanishing(s: Sweep) -> Finding:
    grads = gradients.gradient_table(s.done_metrics) if len(s.done_metrics) else pd.DataFrame()
    plain = grads[grads["family"] == "plain"] if len(grads) else grads
    if plain.empty:
        return Finding(why="no gradient norms were logged (callbacks.gradients)")
    deep = plain[plain["depth"] == plain["depth"].max()]
    worst = float(gradients.gradient_spread(deep)["min_over_max"].min())
    measured = (
        f"plain-{int(deep['depth'].max())}: smallest/largest per-layer gradient "
        f"norm at any logged step {worst:.2g}"
    )
    return Finding(SUPPORTED if worst < VANISH_RATIO else CONTRADICTED, measured)


@claim(
    6,
    "Residual nets converge faster",
    "common explanation",
    figure="fig6.png",
    definition="Convergence: iterations until the running mean (over 5% of the run) of the "
    "batch training error first comes within 5 points of the run's own final training error. "
    f"Faster: at least {100 * SPEED_MARGIN:.0f}% of the run sooner (the interval, with seeds, "
    "clear of it).",
)
def speed(s: Sweep) -> Finding:
    runs, metrics = s.done, s.done_metrics
    if metrics.empty or not {"plain", "resnet"} <= set(runs["family"]):
        return Finding(why="needs finished plain and residual nets with metrics")
    depth = int(
        max(
            set(runs.loc[runs["family"] == "plain", "depth"])
            & set(runs.loc[runs["family"] == "resnet", "depth"]),
            default=0,
        )
    )
    if not depth:
        return Finding(why="needs plain and residual nets of a common depth")
    pair = runs[runs["depth"] == depth]
    max_steps = int(pair["max_steps"].max())
    timed = convergence.per_run(pair, metrics)
    steps = {f: g["iterations_to"].to_numpy(float) for f, g in timed.groupby("family")}
    lead, ci = difference(steps["plain"] / max_steps, steps["resnet"] / max_steps)
    measured = (
        f"iterations to within 5 points of the own final training error at depth {depth}: plain "
        f"{steps['plain'].mean():.0f}, residual {steps['resnet'].mean():.0f}; residual ahead by "
        f"{100 * lead:.0f}% of the run"
        + ("" if ci is None else f" (95% interval {100 * ci[0]:.0f}% to {100 * ci[1]:.0f}%)")
    )
    low, high = (lead, lead) if ci is None else ci
    if low >= SPEED_MARGIN:
        return Finding(SUPPORTED, measured)
    if high <= -SPEED_MARGIN:
        return Finding(CONTRADICTED, measured)
    why = f"not {100 * SPEED_MARGIN:.0f}% of the run apart (or the interval allows both)"
    return Finding(measured=measured, why=why)


@claim(
    7,
    "Residual nets generalize better (smaller test minus training error)",
    "common explanation",
    figure="table.md",
    definition="Generalization gap: final test error minus final training error (measured on "
    "augmented batches in training mode, so it can be negative).",
)
def generalization(s: Sweep) -> Finding:
    gaps = s.done.assign(gap=s.done["final_test_error"] - s.done["final_train_error"])
    plain, resnet = depth_values(gaps, "plain", "gap"), depth_values(gaps, "resnet", "gap")
    common = sorted(set(plain) & set(resnet))
    if not common:
        return Finding(why="needs plain and residual nets of a common depth with test errors")
    depth = common[-1]
    diff, ci = difference(resnet[depth], plain[depth])
    measured = (
        f"depth {depth}: gap residual {points(resnet[depth].mean())}, plain "
        f"{points(plain[depth].mean())}; residual minus plain {points(diff)}"
        f"{interval(ci, ONE_SEED)}"
    )
    lo, hi = (diff - SEED_SPREAD, diff + SEED_SPREAD) if ci is None else ci
    if hi < -MARGIN:
        return Finding(SUPPORTED, measured)
    if lo >= -MARGIN:
        why = "the residual gap is not smaller by more than the margin"
        return Finding(CONTRADICTED, measured, why)
    return Finding(
        measured=measured, why="the interval (or one seed's spread) allows both: more seeds"
    )


@claim(
    11,
    "Residual functions are small: residual nets' layer responses are below plain nets'",
    "paper, §4.2 (Fig. 7)",
    figure="fig7.png",
    definition="Layer responses: median std of the 3x3 layers' responses per run; residual at "
    f"least {100 * RESPONSE_MARGIN:.0f}% below plain (the interval, with seeds, clear of it) "
    "counts as smaller.",
)
def small_responses(s: Sweep) -> Finding:
    found, _ = responses.responses_table(s.done)
    if found.empty:
        return Finding(why="no final checkpoints or responses.csv")
    medians = found.groupby(["family", "depth", "run"])["std"].median()  # per run
    fams = medians.index.get_level_values("family")
    depths = sorted(
        set(medians[fams == "plain"].index.get_level_values("depth"))
        & set(medians[fams == "resnet"].index.get_level_values("depth"))
    )
    if not depths:
        return Finding(why="needs plain and residual nets of a common depth")
    depth = depths[-1]
    plain = medians.loc[("plain", depth)].to_numpy(float)
    resnet = medians.loc[("resnet", depth)].to_numpy(float)
    diff, ci = difference(resnet, plain)
    measured = (
        f"median layer response at depth {depth}: plain {plain.mean():.3g}, residual "
        f"{resnet.mean():.3g}; residual minus plain {diff:+.3g}"
        + ("" if ci is None else f" (95% interval {ci[0]:+.3g} to {ci[1]:+.3g})")
    )
    lo, hi = (diff, diff) if ci is None else ci
    if hi < -RESPONSE_MARGIN * plain.mean():
        return Finding(SUPPORTED, measured)
    if lo >= 0:
        return Finding(CONTRADICTED, measured)
    return Finding(
        measured=measured, why=f"not smaller by {100 * RESPONSE_MARGIN:.0f}% beyond doubt"
    )
