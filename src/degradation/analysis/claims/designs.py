"""The claims on the designs after 2015, decided by sweeps that vary them: identity shortcuts
(He et al. 2016), pre-activation, dense connectivity and residual nets without normalization."""

from __future__ import annotations

import math

from degradation.analysis import normalization, preactivation, shortcut_variants
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    NO_INTERVAL,
    SUPPORTED,
    Finding,
    Sweep,
    claim,
)
from degradation.analysis.claims.training import depth_claim
from degradation.analysis.select import with_defaults
from degradation.analysis.stats import (
    MARGIN,
    compare,
    exceeds,
    familywise,
    interval,
    negate,
    points,
)

NORM_FREE_MARGIN = 0.03  # a norm-free residual net "trains" within 3 points of its BN twin


def side(diff: float, ci: tuple[float, float] | None) -> int:
    """1 when ``diff`` is clearly above the margin, -1 when clearly below minus the margin (its
    interval clear of it), 0 otherwise and without an interval."""
    if exceeds(diff, ci, MARGIN):
        return 1
    return -1 if exceeds(-diff, negate(ci), MARGIN) else 0


@claim(
    12,
    "Identity shortcuts train best: no variant on the shortcut (scaling, gating, 1x1 conv, "
    "dropout) trains better, and most hurt",
    "He et al. 2016, Table 1",
    figure="shortcut_variants.csv",
    definition="Identity shortcut (He et al. 2016): at the deepest ablated depth, no other "
    "shortcut variant ends with a final training error more than the margin below the identity "
    "shortcut's (that contradicts), and more than half end more than the margin above it or "
    "diverge.",
)
def identity_shortcut(s: Sweep) -> Finding:
    leads = shortcut_variants.identity_lead(s.runs[with_defaults(s.runs, ("block", "unit"))])
    if not leads:
        return Finding(
            why="needs residual nets of one depth with identity and other shortcut variants"
        )
    parts, worse, better = [], [], []
    level = familywise(sum(not math.isinf(diff) for _, diff, _ in leads))  # as identity_lead
    for name, diff, ci in leads:
        if math.isinf(diff):  # diverged
            parts.append(name)
            worse.append(name)
            continue
        parts.append(f"{name} {points(diff)}{interval(ci, NO_INTERVAL, level)}")
        lead = side(diff, ci)
        if lead == 1:
            worse.append(name)
        elif lead == -1:
            better.append(name)
    measured = "final training error minus the identity shortcut's: " + "; ".join(parts)
    ties = ", ".join(name for name, _, _ in leads if name not in worse)
    if better:
        return Finding(CONTRADICTED, measured, "trains better: " + ", ".join(better))
    if 2 * len(worse) > len(leads):
        why = f"no variant trains better; close to identity: {ties}" if ties else ""
        return Finding(SUPPORTED, measured, why)
    why = "most variants not clearly worse than identity (within the margin, or too few seeds "
    return Finding(measured=measured, why=why + "for an interval): " + ties)


@claim(
    13,
    "Pre-activation eases the optimization of very deep nets",
    "He et al. 2016, §4",
    figure="preactivation.png",
    definition="Pre-activation: at the deepest depth with both units, the post-activation "
    "residual net's final training error is more than the margin above the pre-activation one's.",
)
def preactivation_eases(s: Sweep) -> Finding:
    runs = s.runs[with_defaults(s.runs, ("shortcut_variant", "init"))]
    found = preactivation.preact_lead(runs)
    if found is None:
        return Finding(why="needs residual nets of one depth with block=post and block=preact")
    diff, ci, depth = found
    measured = (
        f"resnet-{depth} final training error, post minus pre-activation: {points(diff)}"
        f"{interval(ci, NO_INTERVAL)}"
    )
    lead = side(diff, ci)
    if lead == 1:
        return Finding(SUPPORTED, measured)
    if lead == -1:
        return Finding(CONTRADICTED, measured, "post-activation trains better here")
    why = (
        "no difference beyond the margin (or too few seeds for an interval) at depth "
        f"{depth}; the paper's gain is at 164 and 1001 layers"
    )
    return Finding(measured=measured, why=why)


@claim(
    14,
    "Dense connectivity also avoids degradation",
    "Huang et al. 2017",
    figure="fig6.png",
    definition="Dense connectivity: as for residual nets, the deepest dense net's final training "
    "error is not more than the margin above the shallowest one's.",
)
def dense(s: Sweep) -> Finding:
    return depth_claim(
        s.done, "dense", False, "needs finished dense nets of two depths (model=densenet)"
    )


@claim(
    15,
    "Residual nets train without normalization given a suitable initialization",
    "Zhang et al. 2019 (Fixup); De & Smith 2020 (SkipInit)",
    figure="normalization.csv",
    definition="Without normalization: decided per init (Fixup, SkipInit); supported when the "
    f"residual nets of one of them (model.norm=none) end within {100 * NORM_FREE_MARGIN:.0f} "
    "points of the BN residual net of the same depth (final training error) and none diverges; "
    "contradicted when every such init diverges or ends clearly behind (its interval above that "
    "margin), at this sweep's training budget: whether a longer budget closes the gap is read "
    "on the budget axis, not from the slope of a curve after its last learning-rate drop.",
)
def norm_free(s: Sweep) -> Finding:
    found = normalization.norm_free_gaps(s.runs)
    if not found:
        why = "needs residual nets with model.norm=none and init=fixup or skipinit, and BN "
        return Finding(why=why + "residual nets of the same depth")
    parts, trains, fails = [], [], []
    for one in found:
        name = f"{one['init']}"
        if one["diff"] is None:
            parts.append(f"{name}: {one['diverged']} diverged, none finished")
            fails.append(name)
            continue
        parts.append(
            f"{name} {points(one['diff'])}{interval(one['ci'], NO_INTERVAL)}"
            + (f", {one['diverged']} diverged" if one["diverged"] else "")
        )
        behind = compare(one["diff"], one["ci"], NORM_FREE_MARGIN)  # None: not decided
        if one["diverged"] or behind is True:
            fails.append(name)
        elif behind is False:
            trains.append(name)
    depth = found[0]["depth"]
    measured = f"resnet-{depth} without BN minus with BN, final training error: " + "; ".join(parts)
    if trains:
        return Finding(SUPPORTED, measured)
    if len(fails) == len(found):
        steps = s.runs.loc[s.runs["depth"] == depth, "max_steps"].dropna()
        length = f"{int(steps.max())} iterations" if len(steps) else "its length"
        why = f"at this sweep's recipe ({length}); a longer or gentler schedule may differ"
        return Finding(CONTRADICTED, measured, why)
    why = "no init clearly within or clearly behind the margin (or too few seeds for an "
    return Finding(measured=measured, why=why + "interval)")
