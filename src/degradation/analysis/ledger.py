"""The claims ledger: the explanations users bring, each with a measurement and a computed
verdict (supported, contradicted, or not decided by this sweep, with the reason).

Every verdict comes from the runs of a sweep and, where a claim needs them, from probe outputs
found beside it (``init_probes.csv``, ``lesions_single.csv``, ``landscape.csv``). The thresholds
are the constants below; :data:`DEFINITIONS` states them for the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from degradation.analysis import (
    convergence,
    gradients,
    normalization,
    preactivation,
    responses,
    shortcut_variants,
)
from degradation.analysis.base import Context, Section, read_table
from degradation.analysis.degradation import comparable
from degradation.analysis.stats import SEED_SPREAD, compare, difference, exceeds, negate, t975  # noqa: F401 - t975 for callers

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not decided"
MARGIN = 0.01  # error differences up to 1 point count as no difference
FLAT = 0.01  # flattened: fitted change over the final 20% below 1 point
VANISH_RATIO = 1e-3  # a per-layer gradient norm below 1/1000 of the largest counts as vanished
EXPLODE_LOG = 1.0  # init gradients 10x larger (or smaller) at the input than at the output
SPEED_MARGIN = 0.1  # "faster" needs 10% of the run fewer iterations to the threshold
LESION_SMALL, LESION_LARGE = 0.05, 0.20  # median error increase after one deletion
CORRELATION_MARGIN = 0.1  # mean gradient-correlation advantage of residual nets
SHARPNESS_RATIO = 2.0  # one top Hessian eigenvalue at least twice the other
RESPONSE_MARGIN = 0.05  # residual median layer response at least 5% below the plain one
NORM_FREE_MARGIN = 0.03  # a norm-free residual net "trains" within 3 points of its BN twin

DEFINITIONS = [
    f"Error differences of at most {100 * MARGIN:.0f} point count as none. With two or more "
    "seeds per net, a difference comes with a 95% Welch t interval, and a verdict needs the "
    "interval on one side of that margin.",
    "Final training error: mean of the batch errors over the last 5% of the iterations.",
    f"Flattened: a straight line fitted to the batch errors of the final 20% of the iterations "
    f"changes by less than {100 * FLAT:.0f} point over that window.",
    f"Vanished gradient: a conv layer's gradient norm below {VANISH_RATIO:g} times the largest "
    "layer's at the same logged step.",
    f"Exploding / vanishing at initialisation: the first 3x3 layer's gradient norm at least "
    f"{10**EXPLODE_LOG:.0f}x the last layer's, or at most 1/{10**EXPLODE_LOG:.0f} of it "
    "(init_probes, deepest probed depth).",
    "Convergence: iterations until the running mean (over 5% of the run) of the batch training "
    "error first comes within 5 points of the run's own final training error. Faster: at least "
    f"{100 * SPEED_MARGIN:.0f}% of the run sooner (the interval, with seeds, clear of it).",
    "Generalization gap: final test error minus final training error (measured on augmented "
    "batches in training mode, so it can be negative).",
    f"Lesions: median test-error increase after deleting one shape-keeping block; small at most "
    f"{100 * LESION_SMALL:.0f} points, ruinous at least {100 * LESION_LARGE:.0f} points.",
    f"Shattering: mean over probed depths >= 20 of the residual minus the plain (BN) nets' "
    f"gradient correlation at initialisation; a difference above {CORRELATION_MARGIN} counts.",
    f"Landscape (deepest nets): sharper means a top Hessian eigenvalue at least "
    f"{SHARPNESS_RATIO:g}x the other's and a higher mean loss at +-1 along the 1-D direction; "
    "both must agree.",
    f"Layer responses: median std of the 3x3 layers' responses per run; residual at least "
    f"{100 * RESPONSE_MARGIN:.0f}% below plain (the interval, with seeds, clear of it) counts as "
    "smaller.",
    "Identity shortcut (He et al. 2016): at the deepest ablated depth, no other shortcut variant "
    "ends with a final training error more than the margin below the identity shortcut's "
    "(that contradicts), and more than half end more than the margin above it or diverge.",
    f"With one seed per net (no interval), an error difference must clear the margin by "
    f"{100 * SEED_SPREAD:.0f} more points either way to count (about the largest seed-to-seed "
    "std of a net's final training error in results/quick_seeds); otherwise not decided.",
    "Pre-activation: at the deepest depth with both units, the post-activation residual net's "
    "final training error is more than the margin above the pre-activation one's.",
    "Dense connectivity: as for residual nets, the deepest dense net's final training error is "
    "not more than the margin above the shallowest one's.",
    f"Without normalization: decided per init (Fixup, SkipInit); supported when the residual "
    f"nets of one of them (model.norm=none) end within {100 * NORM_FREE_MARGIN:.0f} points of "
    "the BN residual net of the same depth (final training error) and none diverges; "
    "contradicted when every such init diverges or ends clearly behind while no longer "
    f"learning (its error falls by less than {100 * FLAT:.0f} point over the final 20%).",
]


@dataclass
class Row:
    """One claim of the ledger."""

    number: int
    claim: str
    source: str
    measured: str
    verdict: str
    why: str = ""
    figure: str = ""


NEEDED = (
    "run",
    "status",
    "family",
    "depth",
    "seed",
    "max_steps",
    "final_train_error",
    "final_test_error",
)


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs of the paper's design (see :func:`degradation.comparable`)."""
    return comparable(runs.assign(**{c: None for c in NEEDED if c not in runs}))


def _depth_values(runs: pd.DataFrame, family: str, column: str) -> dict[int, np.ndarray]:
    rows = runs[(runs["family"] == family) & runs[column].notna()]
    return {int(d): g[column].to_numpy(float) for d, g in rows.groupby("depth")}


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} points"


def _interval(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return " (one seed: no interval)"
    return f" (95% interval {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})"


def _rises(diff: float, ci: tuple[float, float] | None) -> str:
    """supported when the rise exceeds the margin, contradicted when it stays within it (with
    one seed, by more than a seed's spread either way), not decided otherwise."""
    return {True: SUPPORTED, False: CONTRADICTED, None: UNDECIDED}[compare(diff, ci, MARGIN)]


def _depth_rise(runs: pd.DataFrame, family: str) -> tuple[str, float, tuple | None, str] | None:
    by_depth = _depth_values(runs, family, "final_train_error")
    if len(by_depth) < 2:
        return None
    shallow, deep = min(by_depth), max(by_depth)
    diff, ci = difference(by_depth[deep], by_depth[shallow])
    text = f"{family}-{deep} minus {family}-{shallow}: {_pts(diff)}{_interval(ci)}"
    return _rises(diff, ci), diff, ci, text


def claim_degradation(runs: pd.DataFrame) -> Row:
    row = Row(
        1,
        "Deeper plain nets reach a higher training error (degradation)",
        "paper, §4.1",
        "",
        UNDECIDED,
        figure="fig6.png",
    )
    found = _depth_rise(runs, "plain")
    if found is None:
        row.why = "needs finished plain nets of two depths"
        return row
    row.verdict, _, ci, row.measured = found
    if row.verdict == UNDECIDED:
        row.why = "the interval (or one seed's spread) straddles the margin: more seeds"
    return row


def _final_slope(metrics: pd.DataFrame, run: str, window: float = 0.2) -> float:
    """Fitted change of the batch training error over the final ``window`` of a run."""
    rows = metrics[(metrics["run"] == run) & metrics["train_error"].notna()]
    tail = rows[rows["step"] >= rows["step"].max() * (1 - window)]
    if len(tail) < 10:
        return math.nan
    slope = np.polyfit(tail["step"].to_numpy(float), tail["train_error"].to_numpy(float), 1)[0]
    return float(slope * (tail["step"].max() - tail["step"].min()))


def claim_end_state(runs: pd.DataFrame, metrics: pd.DataFrame) -> Row:
    row = Row(
        2,
        "It is an end state, not slower learning: the deep plain net's curve has "
        "flattened and still lies above the shallow one",
        "paper, §4.1 (footnote 3)",
        "",
        UNDECIDED,
        figure="fig6.png",
    )
    plain = runs[runs["family"] == "plain"]
    found = _depth_rise(runs, "plain")
    if found is None or metrics.empty:
        row.why = "needs finished plain nets of two depths with metrics"
        return row
    deep = plain[plain["depth"] == plain["depth"].max()]
    slopes = [_final_slope(metrics, r) for r in deep["run"]]
    verdict, diff, ci, text = found
    row.measured = (
        f"plain-{int(deep['depth'].iloc[0])} training error changes "
        f"{', '.join(_pts(x) for x in slopes)} over the final 20% (per seed); {text}"
    )
    if any(math.isnan(x) for x in slopes):
        row.why = "too few logged steps in the final 20%"
    elif any(abs(x) >= FLAT for x in slopes):
        row.why = "not flat in every seed at the end: run longer (long_quick)"
    elif verdict == SUPPORTED:
        row.verdict = SUPPORTED
    elif verdict == CONTRADICTED:
        row.verdict, row.why = CONTRADICTED, "flattened, but not above the shallow net"
    else:
        row.why = "flattened, but the depth difference is not decided"
    return row


def claim_residual(runs: pd.DataFrame) -> Row:
    row = Row(
        3,
        "Residual nets of the same depths do not degrade",
        "paper, §4.2",
        "",
        UNDECIDED,
        figure="fig6.png",
    )
    found = _depth_rise(runs, "resnet")
    if found is None:
        row.why = "needs finished residual nets of two depths"
        return row
    rises, diff, ci, row.measured = found
    row.verdict = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}.get(rises, UNDECIDED)
    if row.verdict == UNDECIDED:
        row.why = "the interval (or one seed's spread) straddles the margin: more seeds"
    return row


def claim_vanishing(runs: pd.DataFrame, metrics: pd.DataFrame) -> Row:
    row = Row(
        4,
        "The deep plain nets' gradients vanish during training",
        "common explanation (the paper, §4.1, argues BN keeps them healthy)",
        "",
        UNDECIDED,
        figure="grad_profiles.png",
    )
    grads = gradients.gradient_table(metrics) if len(metrics) else pd.DataFrame()
    plain = grads[grads["family"] == "plain"] if len(grads) else grads
    if plain.empty:
        row.why = "no gradient norms were logged (callbacks.gradients)"
        return row
    deep = plain[plain["depth"] == plain["depth"].max()]
    spread = gradients.gradient_spread(deep)
    worst = float(spread["min_over_max"].min())
    row.measured = (
        f"plain-{int(deep['depth'].max())}: smallest/largest per-layer gradient "
        f"norm at any logged step {worst:.2g}"
    )
    row.verdict = SUPPORTED if worst < VANISH_RATIO else CONTRADICTED
    return row


def _probe(frames: dict, name: str) -> pd.DataFrame | None:
    return frames.get(name)


def claim_bn_init(probes: dict) -> list[Row]:
    a = Row(
        5,
        "Without BN, deep plain nets' gradients vanish or explode at initialisation, and "
        "BN prevents it",
        "common explanation",
        "",
        UNDECIDED,
        figure="init_probes.png",
    )
    b = Row(
        5,
        "BN itself makes gradients explode with depth at initialisation in plain nets",
        "Yang et al. 2019",
        "",
        UNDECIDED,
        figure="init_probes.png",
    )
    nets = _probe(probes, "init_probes")
    if nets is None:
        a.why = b.why = "no init probes (experiments/probe_init.py; analyze --probes DIR)"
        return [a, b]
    plain = nets[nets["family"] == "plain"]
    if plain.empty:
        a.why = b.why = "no plain nets among the init probes"
        return [a, b]
    deepest = int(plain["depth"].max())
    at = plain[plain["depth"] == deepest].groupby("norm")["grad_log_ratio"].mean()
    if not {"batch", "none"} <= set(at.index):
        a.why = "needs plain nets probed with and without BN"
    else:
        none, batch = float(at["none"]), float(at["batch"])
        a.measured = (
            f"plain-{deepest} log10(first/last layer gradient): without BN "
            f"{none:+.2f}, with BN {batch:+.2f}"
        )
        if abs(batch) >= EXPLODE_LOG:
            a.verdict, a.why = CONTRADICTED, "with BN the gradients are far from balanced"
        elif abs(none) >= EXPLODE_LOG:
            a.verdict = SUPPORTED
        else:
            a.why = "neither net is out of balance at the deepest probed depth"
    with_bn = (
        plain[plain["norm"] == "batch"].groupby("depth", as_index=False)["grad_log_ratio"].mean()
    )
    if len(with_bn) < 2:
        b.why = "needs plain BN nets probed at two depths"
        return [a, b]
    first, last = with_bn.iloc[0], with_bn.iloc[-1]
    b.measured = (
        f"plain BN nets, log10(first/last layer gradient): depth {int(first['depth'])} "
        f"{first['grad_log_ratio']:+.2f}, depth {int(last['depth'])} "
        f"{last['grad_log_ratio']:+.2f}"
    )
    grows = last["grad_log_ratio"] - first["grad_log_ratio"] >= EXPLODE_LOG
    b.verdict = SUPPORTED if grows and last["grad_log_ratio"] >= EXPLODE_LOG else CONTRADICTED
    return [a, b]


def claim_speed(runs: pd.DataFrame, metrics: pd.DataFrame) -> Row:
    row = Row(
        6, "Residual nets converge faster", "common explanation", "", UNDECIDED, figure="fig6.png"
    )
    if metrics.empty or not {"plain", "resnet"} <= set(runs["family"]):
        row.why = "needs finished plain and residual nets with metrics"
        return row
    depth = int(
        max(
            set(runs.loc[runs["family"] == "plain", "depth"])
            & set(runs.loc[runs["family"] == "resnet", "depth"]),
            default=0,
        )
    )
    if not depth:
        row.why = "needs plain and residual nets of a common depth"
        return row
    pair = runs[runs["depth"] == depth]
    max_steps = int(pair["max_steps"].max())
    timed = convergence.per_run(pair, metrics)
    steps = {f: g["iterations_to"].to_numpy(float) for f, g in timed.groupby("family")}
    lead, ci = difference(steps["plain"] / max_steps, steps["resnet"] / max_steps)
    row.measured = (
        f"iterations to within 5 points of the own final training error at depth {depth}: plain "
        f"{steps['plain'].mean():.0f}, residual {steps['resnet'].mean():.0f}; residual ahead by "
        f"{100 * lead:.0f}% of the run"
        + ("" if ci is None else f" (95% interval {100 * ci[0]:.0f}% to {100 * ci[1]:.0f}%)")
    )
    low, high = (lead, lead) if ci is None else ci
    if low >= SPEED_MARGIN:
        row.verdict = SUPPORTED
    elif high <= -SPEED_MARGIN:
        row.verdict = CONTRADICTED
    else:
        row.why = f"not {100 * SPEED_MARGIN:.0f}% of the run apart (or the interval allows both)"
    return row


def claim_generalization(runs: pd.DataFrame) -> Row:
    row = Row(
        7,
        "Residual nets generalize better (smaller test minus training error)",
        "common explanation",
        "",
        UNDECIDED,
        figure="table.md",
    )
    gaps = runs.assign(gap=runs["final_test_error"] - runs["final_train_error"])
    plain, resnet = _depth_values(gaps, "plain", "gap"), _depth_values(gaps, "resnet", "gap")
    common = sorted(set(plain) & set(resnet))
    if not common:
        row.why = "needs plain and residual nets of a common depth with test errors"
        return row
    depth = common[-1]
    diff, ci = difference(resnet[depth], plain[depth])
    row.measured = (
        f"depth {depth}: gap residual {_pts(resnet[depth].mean())}, plain "
        f"{_pts(plain[depth].mean())}; residual minus plain {_pts(diff)}"
        f"{_interval(ci)}"
    )
    lo, hi = (diff - SEED_SPREAD, diff + SEED_SPREAD) if ci is None else ci
    if hi < -MARGIN:
        row.verdict = SUPPORTED
    elif lo >= -MARGIN:
        row.verdict = CONTRADICTED
        row.why = "the residual gap is not smaller by more than the margin"
    else:
        row.why = "the interval (or one seed's spread) allows both: more seeds"
    return row


def claim_lesions(probes: dict) -> Row:
    row = Row(
        8,
        "Residual nets behave like ensembles: deleting one block barely hurts them and "
        "ruins a plain net",
        "Veit et al. 2016",
        "",
        UNDECIDED,
        figure="lesions.png",
    )
    single = _probe(probes, "lesions_single")
    if single is None:
        row.why = "no lesion study (experiments/probe_lesions.py; analyze --probes DIR)"
        return row
    rise, key = {}, "net" if "net" in single else "family"
    for family, nets in single.groupby("family"):
        per_net = []
        for _, group in nets.groupby(key):
            base = group.loc[group["block"] == 0, "test_error"].mean()
            keep = group[(group["block"] > 0) & ~group["downsampling"].astype(bool)]
            per_net.append(float(keep["test_error"].median() - base))
        rise[family] = float(np.median(per_net))
    if not {"plain", "resnet"} <= set(rise):
        row.why = "needs lesions of a plain and a residual net"
        return row
    row.measured = (
        f"median test-error increase after one deletion: residual "
        f"{_pts(rise['resnet'])}, plain {_pts(rise['plain'])}"
    )
    if rise["resnet"] <= LESION_SMALL and rise["plain"] >= LESION_LARGE:
        row.verdict = SUPPORTED
    elif rise["resnet"] >= LESION_LARGE or rise["plain"] <= LESION_SMALL:
        row.verdict = CONTRADICTED
    else:
        row.why = "between the thresholds"
    return row


def claim_shattering(probes: dict) -> Row:
    row = Row(
        9,
        "Gradients shatter with depth in plain nets, much less in residual nets",
        "Balduzzi et al. 2017",
        "",
        UNDECIDED,
        figure="init_probes.png",
    )
    nets = _probe(probes, "init_probes")
    if nets is None:
        row.why = "no init probes (experiments/probe_init.py; analyze --probes DIR)"
        return row
    bn = nets[(nets["norm"] == "batch") & (nets["depth"] >= 20)]
    table = bn.pivot_table(index="depth", columns="family", values="grad_correlation")
    if not {"plain", "resnet"} <= set(table.columns) or table.dropna().empty:
        row.why = "needs plain and residual BN nets probed at depths >= 20"
        return row
    advantage = float((table["resnet"] - table["plain"]).mean())
    row.measured = (
        f"gradient correlation at depths {', '.join(map(str, table.index))}: plain "
        f"{', '.join(f'{v:.2f}' for v in table['plain'])}; residual "
        f"{', '.join(f'{v:.2f}' for v in table['resnet'])}"
    )
    if advantage > CORRELATION_MARGIN:
        row.verdict = SUPPORTED
    elif advantage < 0:
        row.verdict = CONTRADICTED
    else:
        row.why = "residual nets ahead by less than the margin"
    return row


def claim_landscape(probes: dict) -> Row:
    row = Row(
        10,
        "Skip connections keep the loss landscape near the solution smooth; deep plain "
        "nets' is chaotic",
        "Li et al. 2018",
        "",
        UNDECIDED,
        figure="landscape.png",
    )
    numbers = _probe(probes, "landscape")
    if numbers is None:
        row.why = "no landscape (experiments/probe_landscape.py; analyze --probes DIR)"
        return row
    numbers = numbers.assign(
        family=numbers["net"].str.split("-").str[0],
        depth=numbers["net"].str.extract(r"-(\d+)")[0].astype(float),
    )
    numbers = numbers[numbers["depth"] == numbers["depth"].max()]  # the deepest nets only
    top = numbers.groupby("family")["top_hessian_eigenvalue"].mean()
    edge = (
        numbers.groupby("family")["loss_at_edge_1d"].mean()
        if "loss_at_edge_1d" in numbers
        else None
    )
    if not {"plain", "resnet"} <= set(top.index) or edge is None:
        row.why = "needs landscapes of a plain and a residual net of the same depth"
        return row
    row.measured = (
        f"top Hessian eigenvalue at the weights: plain {top['plain']:.3g}, residual "
        f"{top['resnet']:.3g}; mean loss at +-1 along a direction: plain {edge['plain']:.3g}, "
        f"residual {edge['resnet']:.3g}"
    )
    sharper_plain = (
        top["plain"] >= SHARPNESS_RATIO * top["resnet"] and edge["plain"] > edge["resnet"]
    )
    sharper_resnet = (
        top["resnet"] >= SHARPNESS_RATIO * top["plain"] and edge["resnet"] > edge["plain"]
    )
    if (top <= 0).any():
        row.why = "a top eigenvalue is not positive: not a minimum along it"
    elif sharper_plain:
        row.verdict = SUPPORTED
        row.why = "measured as curvature, not as chaos over the surface"
    elif sharper_resnet:
        row.verdict = CONTRADICTED
    else:
        row.why = "curvature at the weights and loss far from them disagree (or differ < 2x)"
    return row


def claim_responses(runs: pd.DataFrame) -> Row:
    row = Row(
        11,
        "Residual functions are small: residual nets' layer responses are below plain nets'",
        "paper, §4.2 (Fig. 7)",
        "",
        UNDECIDED,
        figure="fig7.png",
    )
    found, _ = responses.responses_table(runs)
    if found.empty:
        row.why = "no final checkpoints or responses.csv"
        return row
    medians = found.groupby(["family", "depth", "run"])["std"].median()  # per run
    fams = medians.index.get_level_values("family")
    depths = sorted(
        set(medians[fams == "plain"].index.get_level_values("depth"))
        & set(medians[fams == "resnet"].index.get_level_values("depth"))
    )
    if not depths:
        row.why = "needs plain and residual nets of a common depth"
        return row
    depth = depths[-1]
    plain = medians.loc[("plain", depth)].to_numpy(float)
    resnet = medians.loc[("resnet", depth)].to_numpy(float)
    diff, ci = difference(resnet, plain)
    bound = RESPONSE_MARGIN * plain.mean()
    row.measured = (
        f"median layer response at depth {depth}: plain {plain.mean():.3g}, residual "
        f"{resnet.mean():.3g}; residual minus plain {diff:+.3g}"
        + ("" if ci is None else f" (95% interval {ci[0]:+.3g} to {ci[1]:+.3g})")
    )
    lo, hi = (diff, diff) if ci is None else ci
    if hi < -bound:
        row.verdict = SUPPORTED
    elif lo >= 0:
        row.verdict = CONTRADICTED
    else:
        row.why = f"not smaller by {100 * RESPONSE_MARGIN:.0f}% beyond doubt"
    return row


def _design(runs: pd.DataFrame, column: str, default) -> pd.DataFrame:
    """Runs of the default design in ``column`` (older runs without the column count too)."""
    if column not in runs:
        return runs
    return runs[runs[column].isna() | (runs[column] == default)]


def claim_identity_shortcut(runs: pd.DataFrame) -> Row:
    row = Row(
        12,
        "Identity shortcuts train best: no variant on the shortcut (scaling, gating, 1x1 conv, "
        "dropout) trains better, and most hurt",
        "He et al. 2016, Table 1",
        "",
        UNDECIDED,
        figure="shortcut_variants.csv",
    )
    runs = _design(_design(runs, "block", "post"), "unit", "basic")
    runs = runs[runs["normalization"].isna()] if "normalization" in runs else runs
    leads = shortcut_variants.identity_lead(runs)
    if not leads:
        row.why = "needs residual nets of one depth with identity and other shortcut variants"
        return row
    parts, worse, better = [], [], []
    for name, diff, ci in leads:
        if math.isinf(diff):  # diverged
            parts.append(name)
            worse.append(name)
            continue
        parts.append(f"{name} {_pts(diff)}{_interval(ci)}")
        if exceeds(diff, ci, MARGIN, SEED_SPREAD):
            worse.append(name)
        elif exceeds(-diff, negate(ci), MARGIN, SEED_SPREAD):
            better.append(name)
    row.measured = "final training error minus the identity shortcut's: " + "; ".join(parts)
    if better:
        row.verdict = CONTRADICTED
        row.why = "trains better: " + ", ".join(better)
    elif 2 * len(worse) > len(leads):
        row.verdict = SUPPORTED
        ties = [name for name, _, _ in leads if name not in worse]
        row.why = (
            ("no variant trains better; close to identity: " + ", ".join(ties)) if ties else ""
        )
    else:
        ties = [name for name, _, _ in leads if name not in worse]
        row.why = "most variants not clearly worse than identity (within the margin, or one "
        row.why += "seed's spread): " + ", ".join(ties)
    return row


def claim_preactivation(runs: pd.DataFrame) -> Row:
    row = Row(
        13,
        "Pre-activation eases the optimization of very deep nets",
        "He et al. 2016, §4",
        "",
        UNDECIDED,
        figure="preactivation.png",
    )
    runs = _design(_design(runs, "shortcut_variant", "identity"), "init", "default")
    runs = runs[runs["normalization"].isna()] if "normalization" in runs else runs
    found = preactivation.preact_lead(runs)
    if found is None:
        row.why = "needs residual nets of one depth with block=post and block=preact"
        return row
    diff, ci, depth = found
    row.measured = (
        f"resnet-{depth} final training error, post minus pre-activation: {_pts(diff)}"
        f"{_interval(ci)}"
    )
    if exceeds(diff, ci, MARGIN, SEED_SPREAD):
        row.verdict = SUPPORTED
    elif exceeds(-diff, negate(ci), MARGIN, SEED_SPREAD):
        row.verdict = CONTRADICTED
        row.why = "post-activation trains better here"
    else:
        row.why = (
            f"no difference beyond the margin (or one seed's spread) at depth {depth}; the "
            "paper's gain is at 164 and 1001 layers"
        )
    return row


def claim_dense(runs: pd.DataFrame) -> Row:
    row = Row(
        14,
        "Dense connectivity also avoids degradation",
        "Huang et al. 2017",
        "",
        UNDECIDED,
        figure="fig6.png",
    )
    found = _depth_rise(runs, "dense")
    if found is None:
        row.why = "needs finished dense nets of two depths (model=densenet)"
        return row
    _, diff, ci, row.measured = found
    if exceeds(diff, ci, MARGIN, SEED_SPREAD):
        row.verdict = CONTRADICTED
    elif (ci[1] if ci else diff + SEED_SPREAD) <= MARGIN:
        row.verdict = SUPPORTED
    else:
        row.why = "the interval (or one seed's spread) straddles the margin: more seeds"
    return row


def claim_norm_free(runs: pd.DataFrame, metrics: pd.DataFrame) -> Row:
    row = Row(
        15,
        "Residual nets train without normalization given a suitable initialization",
        "Zhang et al. 2019 (Fixup); De & Smith 2020 (SkipInit)",
        "",
        UNDECIDED,
        figure="normalization.csv",
    )
    found = normalization.norm_free_gaps(runs)
    if not found:
        row.why = "needs residual nets with model.norm=none and init=fixup or skipinit, and BN "
        row.why += "residual nets of the same depth"
        return row
    parts, trains, fails = [], [], []
    for one in found:
        name = f"{one['init']}"
        if one["diff"] is None:
            parts.append(f"{name}: {one['diverged']} diverged, none finished")
            fails.append(name)
            continue
        slopes = [_final_slope(metrics, r) for r in one["runs"]] if len(metrics) else []
        learning = [x for x in slopes if not math.isnan(x) and x < -FLAT]
        parts.append(
            f"{name} {_pts(one['diff'])}{_interval(one['ci'])}"
            + (f", {one['diverged']} diverged" if one["diverged"] else "")
            + (f", still falling {', '.join(_pts(x) for x in learning)} over the final 20%"
               if learning else "")
        )  # fmt: skip
        behind = exceeds(one["diff"], one["ci"], NORM_FREE_MARGIN, SEED_SPREAD)
        close = (one["ci"][1] if one["ci"] else one["diff"] + SEED_SPREAD) <= NORM_FREE_MARGIN
        if one["diverged"] or (behind and not learning):
            fails.append(name)
        elif close:
            trains.append(name)
    depth = found[0]["depth"]
    row.measured = f"resnet-{depth} without BN minus with BN, final training error: " + "; ".join(
        parts
    )
    if trains:
        row.verdict = SUPPORTED
    elif len(fails) == len(found):
        row.verdict = CONTRADICTED
        steps = runs.loc[runs["depth"] == depth, "max_steps"].dropna()
        length = f"{int(steps.max())} iterations" if len(steps) else "its length"
        row.why = f"at this sweep's recipe ({length}); a longer or gentler schedule may differ"
    else:
        row.why = "behind but still learning at the end, or within one seed's spread: run longer"
        row.why += " or more seeds"
    return row


PROBE_FILES = {
    "init_probes": "init_probes.csv",
    "lesions_single": "lesions_single.csv",
    "landscape": "landscape.csv",
}


def find_probes(dirs: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Probe outputs found in these directories (the first of each kind)."""
    found = {}
    for directory in dirs:
        for key, name in PROBE_FILES.items():
            path = Path(directory) / name
            if key not in found and path.is_file():
                frame = read_table(path)  # a damaged table is named and passed over
                if frame is not None:
                    found[key] = frame
    return found


PROBE_FIGURES = {
    "init_probes": "init_probes.png",
    "lesions_single": "lesions.png",
    "landscape": "landscape.png",
}


def probe_figures(dirs: Sequence[str | Path]) -> list[Path]:
    """The figure of each probe whose table :func:`find_probes` uses."""
    figures = []
    for key, name in PROBE_FILES.items():
        source = next((Path(d) for d in dirs if (Path(d) / name).is_file()), None)
        if source is not None and (source / PROBE_FIGURES[key]).is_file():
            figures.append(source / PROBE_FIGURES[key])
    return figures


def ledger(runs: pd.DataFrame, metrics: pd.DataFrame, probes: dict | None = None) -> list[Row]:
    """Every claim with its computed verdict."""
    probes = probes or {}
    done = _finished(runs)
    done_metrics = metrics[metrics["run"].isin(done["run"])] if len(metrics) else metrics
    return [
        claim_degradation(done),
        claim_end_state(done, done_metrics),
        claim_residual(done),
        claim_vanishing(done, done_metrics),
        *claim_bn_init(probes),
        claim_speed(done, done_metrics),
        claim_generalization(done),
        claim_lesions(probes),
        claim_shattering(probes),
        claim_landscape(probes),
        claim_responses(done),
        claim_identity_shortcut(runs),
        claim_preactivation(runs),
        claim_dense(done),
        claim_norm_free(runs, metrics),
    ]


def table(rows: list[Row]) -> pd.DataFrame:
    """The ledger as a table."""
    return pd.DataFrame(
        [
            {
                "#": r.number,
                "claim": r.claim,
                "source": r.source,
                "measured": r.measured or "-",
                "verdict": r.verdict + (f" ({r.why})" if r.why else ""),
                "figure": f"[{r.figure}]({r.figure})" if r.figure else "",
            }
            for r in rows
        ]
    )


TITLE = "Claims ledger"
NEEDS = "finished runs; probe outputs (init_probes.csv, lesions_single.csv, landscape.csv) for the "
NEEDS += "claims that need them"


def section(ctx: Context) -> Section:
    """The ledger table (also ledger.csv), probes looked for in the probe directories first."""
    rows = ledger(ctx.runs, ctx.metrics, find_probes([*ctx.probe_dirs, ctx.out_dir]))
    ctx.save_table(table(rows), "ledger")
    for figure in probe_figures([*ctx.probe_dirs, ctx.out_dir]):  # beside the report's links
        ctx.copy_beside(figure)
    undecided = [f"claim {r.number}: {r.why}" for r in rows if r.verdict == UNDECIDED and r.why]
    return Section(
        TITLE,
        [
            "Each explanation users bring, what this sweep measured, and the verdict computed "
            "from it (thresholds under Definitions).",
            "",
            table(rows).to_markdown(index=False),
        ],
        skipped=undecided,
    )
