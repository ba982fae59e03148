"""The claims on the designs after 2015, decided by sweeps that vary them: identity shortcuts
(He et al. 2016), pre-activation, dense connectivity and residual nets without normalization."""

from __future__ import annotations

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
    MIN_SEEDS,
    compare,
    exceeds,
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
    definition="Identity shortcut (He et al. 2016): at the deepest ablated depth, every other "
    "shortcut variant ends with a final training error shown not to lie more than the margin "
    "below the identity shortcut's (its interval above minus the margin) or diverges, and more "
    "than half end more than the margin above it or diverge; one that ends more than the margin "
    "below it contradicts. A variant setting counts as diverged when its runs diverged in at "
    f"least {MIN_SEEDS} distinct seeds; fewer diverged runs are reported but do not decide, and "
    "its finished runs give its difference as for any other.",
)
def identity_shortcut(s: Sweep) -> Finding:
    leads = shortcut_variants.identity_lead(s.runs[with_defaults(s.runs, ("block", "unit"))])
    if not leads:
        return Finding(
            why="needs residual nets of one depth with identity and other shortcut variants"
        )
    parts, worse, better, few, unshown = [], [], [], [], []
    for lead in leads:
        text = [lead.divergence] if lead.diverged else []
        if lead.finished:
            text.insert(0, f"{points(lead.diff)}{interval(lead.ci, NO_INTERVAL, lead.level)}")
        else:
            text.append("none finished")
        parts.append(f"{lead.name} " + ", ".join(text))
        found = side(lead.diff, lead.ci) if lead.finished else 0
        if lead.diverges or found == 1:
            worse.append(lead.name)
        elif lead.diverged:
            few.append(lead.name)
        if found == -1:
            better.append(lead.name)
        elif not lead.diverges and not (lead.finished and exceeds(lead.diff, lead.ci, -MARGIN)):
            unshown.append(lead.name)  # not shown to be no better than identity
    measured = "final training error minus the identity shortcut's: " + "; ".join(parts)
    ties = ", ".join(lead.name for lead in leads if lead.name not in worse + few)
    # a few diverged runs: reported, not counted (their finished runs not clearly worse either)
    few_why = []
    if few:
        few_why = [f"diverged in fewer than {MIN_SEEDS} seeds, too few to count: " + ", ".join(few)]
    if better:
        return Finding(CONTRADICTED, measured, "trains better: " + ", ".join(better))
    if 2 * len(worse) > len(leads) and not unshown:
        why = ([f"close to identity: {ties}"] if ties else []) + few_why
        why = "; ".join(["no variant trains better", *why]) if why else ""
        return Finding(SUPPORTED, measured, why)
    whys = []
    if 2 * len(worse) <= len(leads):
        why = "most variants not clearly worse than identity"
        if ties:
            why += " (within the margin, or too few seeds for an interval): " + ties
        whys.append(why)
    if unshown:
        whys.append(
            "not shown to train no better than identity (an interval reaching below minus the "
            "margin, or too few seeds for one): " + ", ".join(unshown)
        )
    return Finding(measured=measured, why="; ".join([*whys, *few_why]))


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
    f"margin). An init diverges when its runs diverged in at least {MIN_SEEDS} distinct seeds; "
    "fewer diverged runs are reported and keep it from training, but do not make it fail. All at "
    "this sweep's training budget: whether a longer budget closes the gap is read on the budget "
    "axis, not from the slope of a curve after its last learning-rate drop.",
)
def norm_free(s: Sweep) -> Finding:
    found = normalization.norm_free_gaps(s.runs)
    if not found:
        why = "needs residual nets with model.norm=none and init=fixup or skipinit, and BN "
        return Finding(why=why + "residual nets of the same depth")
    parts, trains, fails, few = [], [], [], []
    for one in found:
        name = f"{one['init']}"
        diverged = shortcut_variants.diverged_text(
            one["diverged"], one["ended"], one["diverged_seeds"]
        )
        fails_by_divergence = one["diverged_seeds"] >= MIN_SEEDS
        if one["diff"] is None:
            parts.append(
                f"{name}: " + ", ".join([*([diverged] if diverged else []), "none finished"])
            )
            behind = None
        else:
            level = one["level"]
            parts.append(
                f"{name} {points(one['diff'])}{interval(one['ci'], NO_INTERVAL, level)}"
                + (f", {diverged}" if diverged else "")
            )
            behind = compare(one["diff"], one["ci"], NORM_FREE_MARGIN)  # None: not decided
        if fails_by_divergence or behind is True:
            fails.append(name)
        elif one["diverged"]:  # too few to fail it, but a diverged run keeps it from training
            few.append(name)
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
    why += "interval)"
    if few:
        why += (
            f"; diverged in fewer than {MIN_SEEDS} seeds, too few to fail, but a diverged run "
            "keeps it from training: " + ", ".join(few)
        )
    return Finding(measured=measured, why=why)
