"""The claims decided by the sweep's runs themselves (their final errors, metrics and final
weights): degradation and the residual fix, the end state, vanishing gradients, convergence
speed, the generalization gap and the size of residual functions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from degradation.analysis import budget, convergence, gradients, responses, train_eval
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    SUPPORTED,
    UNDECIDED,
    Finding,
    Sweep,
    claim,
)
from degradation.analysis.convergence import EARLY_FRACTIONS, STUCK_ERROR
from degradation.analysis.gradients import VANISH_RATIO
from degradation.analysis.responses import RESPONSE_MARGIN
from degradation.analysis.stats import (
    MARGIN,
    compare,
    difference,
    interval_or_why,
    no_interval,
    points,
)

STRADDLES = "the interval straddles the margin: more seeds"
FLIPPED = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}


def depth_values(runs: pd.DataFrame, family: str, column: str) -> dict[int, np.ndarray]:
    """``column`` of the ``family`` runs, per depth."""
    rows = runs[(runs["family"] == family) & runs[column].notna()]
    return {int(d): g[column].to_numpy(float) for d, g in rows.groupby("depth")}


def rises(diff: float, ci: tuple[float, float] | None) -> str:
    """supported when the rise's interval lies above the margin, contradicted when it lies
    within it, not decided otherwise (and without an interval)."""
    return {True: SUPPORTED, False: CONTRADICTED, None: UNDECIDED}[compare(diff, ci, MARGIN)]


def depth_rise(runs: pd.DataFrame, family: str) -> tuple[str, str, str] | None:
    """Whether the deepest ``family`` net ends with a higher training error than the shallowest
    (:func:`rises`), that difference in words and why it is not decided; None without two
    depths."""
    by_depth = depth_values(runs, family, "final_train_error")
    if len(by_depth) < 2:
        return None
    shallow, deep = min(by_depth), max(by_depth)
    diff, ci = difference(by_depth[deep], by_depth[shallow])
    groups = (by_depth[deep], by_depth[shallow])
    text = f"{family}-{deep} minus {family}-{shallow}: {points(diff)}{interval_or_why(ci, *groups)}"
    return rises(diff, ci), text, no_interval(*groups) or STRADDLES


def depth_claim(runs: pd.DataFrame, family: str, degrades: bool, needs: str) -> Finding:
    """The finding on 'deeper ``family`` nets train worse' (``degrades``) or '... do not'."""
    found = depth_rise(runs, family)
    if found is None:
        return Finding(why=needs)
    verdict, measured, why = found
    verdict = verdict if degrades else FLIPPED.get(verdict, UNDECIDED)
    return Finding(verdict, measured, why if verdict == UNDECIDED else "")


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
    definition="Vanished gradient: per run of the deepest plain net, the median over its logged "
    "steps after the first (step 0 is the initialisation, not training) of the smallest over the "
    "largest per-weight RMS gradient of its 3x3 convs (the L2 norm over the square root of the "
    "layer's size, so that layer size does not enter); vanished when the 95% interval over "
    f"seeds of its log10 lies below log10({VANISH_RATIO:g}), healthy when above.",
)
def vanishing(s: Sweep) -> Finding:
    grads = gradients.gradient_table(s.done_metrics) if len(s.done_metrics) else pd.DataFrame()
    found = gradients.read_vanishing(grads, s.done)
    if found is None:
        return Finding(why="no gradient norms were logged (callbacks.gradients)")
    return Finding(found.verdict, found.measured, found.why)


def common_depth(runs: pd.DataFrame) -> int:
    """The deepest depth with both plain and residual runs (0 if none)."""
    plain = set(runs.loc[runs["family"] == "plain", "depth"])
    return int(max(plain & set(runs.loc[runs["family"] == "resnet", "depth"]), default=0))


@claim(
    6,
    "Residual nets converge faster",
    "common explanation",
    figure="fig6.png",
    definition="Convergence speed: the early training error, the mean of the running batch "
    "training error (over 5% of the run) at "
    + ", ".join(f"{f:g}" for f in EARLY_FRACTIONS)
    + " of the iterations before the first learning-rate drop (so the schedule does not set it), "
    "at the deepest depth with both families; faster when the residual net's lies more than the "
    "margin below the plain net's (interval over seeds), not faster when within it. Only for nets "
    f"that end below {100 * STUCK_ERROR:.0f}% training error: a net stuck near chance has no "
    "speed to compare, and cannot win.",
)
def speed(s: Sweep) -> Finding:
    runs, metrics = s.done, s.done_metrics
    if metrics.empty or not {"plain", "resnet"} <= set(runs["family"]):
        return Finding(why="needs finished plain and residual nets with metrics")
    depth = common_depth(runs)
    if not depth:
        return Finding(why="needs plain and residual nets of a common depth")
    timed = convergence.per_run(runs[runs["depth"] == depth], metrics)
    stuck = timed.loc[timed["final_train_error"] >= STUCK_ERROR, "run"].tolist()
    if stuck:
        return Finding(why=f"ends at or above {100 * STUCK_ERROR:.0f}%: " + ", ".join(stuck))
    early = {f: g["early_error"].to_numpy(float) for f, g in timed.groupby("family")}
    lead, ci = difference(early["plain"], early["resnet"])
    measured = (
        f"early training error at depth {depth}: plain {100 * early['plain'].mean():.1f}%, "
        f"residual {100 * early['resnet'].mean():.1f}%; plain minus residual {points(lead)}"
        f"{interval_or_why(ci, early['plain'], early['resnet'])}"
    )
    found = compare(lead, ci, MARGIN)
    if found is None:
        return Finding(measured=measured, why=no_interval(*early.values()) or STRADDLES)
    return Finding(SUPPORTED if found else CONTRADICTED, measured)


@claim(
    7,
    "Residual nets generalize better (smaller test minus training error)",
    "common explanation",
    figure="table.md",
    definition="Generalization gap: final test error minus the training error measured the same "
    f"way (eval mode, no augmentation) on the first {train_eval.TRAIN_EVAL_IMAGES} training "
    "images, from the final weights (train_eval.csv per run), at the deepest depth with both "
    "families; smaller when the residual gap lies more than the margin below the plain one "
    "(interval over seeds). The batch training error of the curves (training mode, augmented) "
    "would give a gap that can be negative; it is not used here.",
)
def generalization(s: Sweep) -> Finding:
    done = s.done[s.done["final_test_error"].notna()] if len(s.done) else s.done
    depth = common_depth(done) if len(done) else 0
    if not depth:
        return Finding(why="needs plain and residual nets of a common depth with test errors")
    pair = done[done["depth"] == depth]
    train, skipped = train_eval.table(pair)
    if train.empty:
        why = "needs final weights (or train_eval.csv) of the nets: " + "; ".join(skipped[:2])
        return Finding(why=why)
    gaps = pair.assign(gap=pair["final_test_error"] - pair["run"].map(train))
    plain, resnet = (gaps.loc[gaps["family"] == f, "gap"].dropna().to_numpy(float)
                     for f in ("plain", "resnet"))  # fmt: skip
    if not len(plain) or not len(resnet):
        return Finding(why=f"needs the eval-mode training error of both nets at depth {depth}")
    diff, ci = difference(resnet, plain)
    measured = (
        f"depth {depth}: test minus eval-mode training error, residual {points(resnet.mean())}, "
        f"plain {points(plain.mean())}; residual minus plain {points(diff)}"
        f"{interval_or_why(ci, resnet, plain)}"
    )
    found = compare(-diff, None if ci is None else (-ci[1], -ci[0]), MARGIN)
    if found is None:
        why = no_interval(resnet, plain) or "the interval allows both: more seeds"
        return Finding(measured=measured, why=why)
    if found:
        return Finding(SUPPORTED, measured)
    return Finding(
        CONTRADICTED, measured, "the residual gap is not smaller by more than the margin"
    )


@claim(
    11,
    "Residual functions are small: residual nets' layer responses are below plain nets'",
    "paper, §4.2 (Fig. 7)",
    figure="fig7.png",
    definition="Layer responses (Fig. 7): at the deepest depth with both families, per seed the "
    "median over the 3x3 layers of the residual over the plain net's response std, layer by "
    "layer (seed s of one family with seed s of the other); smaller when the 95% interval over "
    f"seeds of that ratio lies below {1 - RESPONSE_MARGIN:g}, not smaller when at or above it.",
)
def small_responses(s: Sweep) -> Finding:
    found, _ = responses.responses_table(s.done)
    if found.empty:
        return Finding(why="no final checkpoints or responses.csv")
    reading = responses.smaller(found)
    return Finding(reading.verdict, reading.measured, reading.why)
