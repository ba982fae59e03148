"""The claims decided by probe outputs found beside a sweep (``experiments/probe_*.py``): BN
and gradients at initialisation, shattered gradients, lesions and the loss landscape; and where
those outputs are found."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from degradation.analysis.base import find_files, read_table
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    PROBES,
    SUPPORTED,
    Finding,
    Sweep,
    claim,
)
from degradation.analysis.stats import (
    LEVEL,
    MIN_SEEDS,
    compare,
    difference,
    familywise,
    mean_interval,
    no_interval,
    points,
)

EXPLODE_LOG = 1.0  # init gradients 10x larger (or smaller) at the input than at the output
LESION_SMALL, LESION_LARGE = 0.05, 0.20  # median error increase after one deletion
# Shattering: residual nets keep this much more of their lag-1 line correlation over the
# probed depths than plain nets.
CORRELATION_MARGIN = 0.1
# Chaotic: the plain nets' share of non-monotone 1-D curves above the residual nets' by this,
# and their grid-mean |lambda_min / lambda_max| above the residual nets' by RATIO_MARGIN.
NONCONVEX_MARGIN = 0.1
RATIO_MARGIN = 0.05


def find_probes(dirs: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Probe outputs found in these directories (of each kind the first readable one: a
    damaged table is named and passed over)."""
    found = {}
    for key, probe in PROBES.items():
        frames = (read_table(path) for path in find_files(dirs, probe.table))
        frame = next((f for f in frames if f is not None), None)
        if frame is not None:
            found[key] = frame
    return found


def probe_figures(dirs: Sequence[str | Path]) -> list[Path]:
    """The figure of each probe whose table :func:`find_probes` uses."""
    figures = []
    for probe in PROBES.values():
        table = next(find_files(dirs, probe.table), None)
        figure = None if table is None else table.parent / probe.figure
        if figure is not None and figure.is_file() and figure not in figures:
            figures.append(figure)
    return figures


@claim(
    5,
    "Without BN, deep plain nets' gradients vanish or explode at initialisation, and BN "
    "prevents it",
    "common explanation",
    also=(
        (
            "BN itself makes gradients explode with depth at initialisation in plain nets",
            "Yang et al. 2019",
        ),
    ),
    figure="init_probes.png",
    probe="init_probes",
    definition="Exploding / vanishing at initialisation: the first 3x3 layer's gradient norm at "
    f"least {10**EXPLODE_LOG:.0f}x the last layer's, or at most 1/{10**EXPLODE_LOG:.0f} of it "
    "(init_probes, deepest probed depth).",
)
def bn_init(s: Sweep) -> tuple[Finding, Finding]:
    nets = s.probes["init_probes"]
    plain = nets[nets["family"] == "plain"]
    if plain.empty:
        why = "no plain nets among the init probes"
        return Finding(why=why), Finding(why=why)
    return _bn_prevents(plain), _bn_explodes(plain)


def _per_seed(plain: pd.DataFrame, depth: int, norm: str) -> np.ndarray:
    rows = plain[(plain["depth"] == depth) & (plain["norm"] == norm)]
    return rows["grad_log_ratio"].dropna().to_numpy(float)


def _side(
    values: np.ndarray, level: float, confidence: float = LEVEL
) -> tuple[float, str, bool | None]:
    """The mean of ``values``, its interval in words, and whether its magnitude is above
    ``level`` (True), below it (False) or not decided (None) by the ``confidence`` interval
    over seeds."""
    mean, ci = mean_interval(values, MIN_SEEDS, confidence)
    text = f"{mean:+.2f}" + (
        f" ({100 * confidence:g}% interval {ci[0]:+.2f} to {ci[1]:+.2f})"
        if ci
        else f" ({no_interval(values)})"
    )
    if ci is None:
        return mean, text, None
    if ci[0] >= level or ci[1] <= -level:
        return mean, text, True
    if -level < ci[0] and ci[1] < level:
        return mean, text, False
    return mean, text, None


def _bn_prevents(plain: pd.DataFrame) -> Finding:
    deepest = int(plain["depth"].max())
    none, batch = _per_seed(plain, deepest, "none"), _per_seed(plain, deepest, "batch")
    if not len(none) or not len(batch):
        return Finding(why="needs plain nets probed with and without BN")
    _, none_text, none_off = _side(none, EXPLODE_LOG)
    _, batch_text, batch_off = _side(batch, EXPLODE_LOG)
    measured = (
        f"plain-{deepest} log10(first/last layer gradient per weight): without BN {none_text}, "
        f"with BN {batch_text}"
    )
    if batch_off is True:
        return Finding(CONTRADICTED, measured, "with BN the gradients are far from balanced")
    if batch_off is False and none_off is True:
        return Finding(SUPPORTED, measured)
    if batch_off is None or none_off is None:
        return Finding(measured=measured, why=no_interval(none, batch) or "an interval straddles")
    return Finding(measured=measured, why="neither net is out of balance at the deepest depth")


def _bn_explodes(plain: pd.DataFrame) -> Finding:
    with_bn = plain[plain["norm"] == "batch"]
    depths = sorted(int(d) for d in with_bn["depth"].unique())
    if len(depths) < 2:
        return Finding(why="needs plain BN nets probed at two depths")
    first, last = (_per_seed(plain, d, "batch") for d in (depths[0], depths[-1]))
    # either test alone can contradict: each at 97.5% (Bonferroni over the two)
    growth, ci = difference(last, first, level=familywise(2))
    _, last_text, last_off = _side(last, EXPLODE_LOG, familywise(2))
    measured = (
        f"plain BN nets, log10(first/last layer gradient per weight): depth {depths[0]} "
        f"{first.mean():+.2f}, depth {depths[-1]} {last_text}; growth {growth:+.2f}"
        + (f" ({100 * familywise(2):g}% interval {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else "")
    )
    grows = compare(growth, ci, EXPLODE_LOG)
    if grows is True and last_off is True and last.mean() > 0:
        return Finding(SUPPORTED, measured)
    if grows is False or last_off is False:
        return Finding(CONTRADICTED, measured)
    return Finding(measured=measured, why=no_interval(last, first) or "an interval straddles")


def lesion_rises(single: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per family, per lesioned net (one per seed): the median test-error increase over its
    shape-keeping blocks deleted one at a time."""
    key = "net" if "net" in single else "family"
    rises: dict[str, list[float]] = {}
    for (family, _), group in single.groupby(["family", key]):
        base = group.loc[group["block"] == 0, "test_error"].mean()
        keep = group[(group["block"] > 0) & ~group["downsampling"].astype(bool)]
        rises.setdefault(family, []).append(float(keep["test_error"].median() - base))
    return {f: np.asarray(v) for f, v in rises.items()}


def lesion_slopes(random: pd.DataFrame, single: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per family, per lesioned net: the least-squares slope of the test error (minus the
    net's unlesioned error) against the number of randomly deleted blocks."""
    key = "net" if "net" in random else "family"
    base = single[single["block"] == 0].groupby(key)["test_error"].mean()
    slopes: dict[str, list[float]] = {}
    for (family, net), group in random.groupby(["family", key]):
        if group["k"].nunique() >= 2 and net in base.index:
            rise = group["test_error"].to_numpy(float) - base[net]
            slope = np.polyfit(group["k"].to_numpy(float), rise, 1)[0]
            slopes.setdefault(family, []).append(float(slope))
    return {f: np.asarray(v) for f, v in slopes.items()}


def _in_points(values: np.ndarray, level: float = LEVEL) -> tuple[str, tuple[float, float] | None]:
    mean, ci = mean_interval(values, MIN_SEEDS, level)
    text = f"{points(mean)}" + (
        f" ({100 * level:g}% interval {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})" if ci else ""
    )
    return text, ci


@claim(
    8,
    "Residual nets behave like ensembles: deleting one block barely hurts them and ruins a "
    "plain net",
    "Veit et al. 2016",
    figure="lesions.png",
    probe="lesions_single",
    definition="Lesions (Veit et al.): per lesioned net (one per seed), the median test-error "
    "increase after deleting one shape-keeping block; supported when the residual nets' lies "
    f"below {100 * LESION_SMALL:.0f} points and the plain nets' above "
    f"{100 * LESION_LARGE:.0f} points (95% intervals over seeds), contradicted when the residual "
    f"nets' lies above {100 * LESION_LARGE:.0f} or the plain nets' below "
    f"{100 * LESION_SMALL:.0f}. Beside it, the slope of the error against the number of blocks "
    "deleted at random (per block), with its interval.",
)
def lesions(s: Sweep) -> Finding:
    single = s.probes["lesions_single"]
    if "depth" in single and single["depth"].notna().any():  # the deepest lesioned nets only
        single = single[single["depth"] == single["depth"].max()]
    rise = lesion_rises(single)
    if not {"plain", "resnet"} <= set(rise):
        return Finding(why="needs lesions of a plain and a residual net")
    # either net alone can contradict: each interval at 97.5% (Bonferroni over the two)
    level = familywise(2)
    (res_text, res_ci), (plain_text, plain_ci) = (
        _in_points(rise["resnet"], level),
        _in_points(rise["plain"], level),
    )
    measured = (
        f"median test-error increase after one deletion: residual {res_text}, plain "
        f"{plain_text} over {min(len(rise['resnet']), len(rise['plain']))} net(s) each"
    )
    random = s.probes.get("lesions_random")
    if random is not None and len(random):
        slopes = lesion_slopes(random, single)
        if "resnet" in slopes:
            measured += (
                "; residual error per block deleted at random " + _in_points(slopes["resnet"])[0]
            )
    if res_ci is None or plain_ci is None:
        return Finding(measured=measured, why=no_interval(rise["resnet"], rise["plain"]))
    if res_ci[1] < LESION_SMALL and plain_ci[0] > LESION_LARGE:
        return Finding(SUPPORTED, measured)
    if res_ci[0] > LESION_LARGE or plain_ci[1] < LESION_SMALL:
        return Finding(CONTRADICTED, measured)
    return Finding(measured=measured, why="an interval reaches between the thresholds")


def kept_with_depth(nets: pd.DataFrame) -> pd.DataFrame:
    """Per family and init seed (BN nets): the share of the shallowest probed depth's lag-1 line
    correlation that is left at the deepest one (``kept``), and the decay length in layers of
    the exponential c(L) = c0 exp(-L / length) through those two depths (``length``; inf when
    nothing is lost)."""
    rows = []
    for (family, seed), group in nets.groupby(["family", "seed"]):
        group = group.dropna(subset=["line_correlation"]).sort_values("depth")
        if group["depth"].nunique() < 2:
            continue
        first, last = group.iloc[0], group.iloc[-1]
        if first["line_correlation"] <= 0:
            continue
        kept = float(last["line_correlation"] / first["line_correlation"])
        span = float(last["depth"] - first["depth"])
        length = span / -np.log(kept) if 0 < kept < 1 else (np.inf if kept >= 1 else 0.0)
        rows.append({"family": family, "seed": seed, "kept": kept, "length": length})
    return pd.DataFrame(rows, columns=["family", "seed", "kept", "length"])


@claim(
    9,
    "Gradients shatter with depth in plain nets, much less in residual nets",
    "Balduzzi et al. 2017",
    figure="init_probes.png",
    probe="init_probes",
    definition="Shattering (Balduzzi et al.'s measure on images: per-example input gradients "
    "along a line of inputs, BN held at one batch's statistics; see init_probes): per init seed "
    "and family (BN nets), the share of the shallowest probed depth's lag-1 correlation of "
    "neighbouring points' gradients left at the deepest probed depth (the fit of an "
    "exponential decay with depth through the two, whose decay length in layers is shown); "
    f"supported when the residual nets keep more than the plain nets by more than "
    f"{CORRELATION_MARGIN:g} (95% interval over init seeds), contradicted when they do not.",
)
def shattering(s: Sweep) -> Finding:
    nets = s.probes["init_probes"]
    if "line_correlation" not in nets or "seed" not in nets:
        why = "the init probes predate the line measure: re-run experiments/probe_init.py"
        return Finding(why=why)
    bn = nets[nets["norm"] == "batch"]
    kept = kept_with_depth(bn)
    per = {f: g for f, g in kept.groupby("family")}
    if not {"plain", "resnet"} <= set(per):
        return Finding(why="needs plain and residual BN nets probed at two or more depths")
    share = {f: per[f]["kept"].to_numpy(float) for f in ("plain", "resnet")}
    more, ci = difference(share["resnet"], share["plain"])
    means = bn.groupby(["family", "depth"])["line_correlation"].mean()
    listed = "; ".join(
        f"{family} " + ", ".join(f"{v:.2f}" for v in means[family])
        for family in ("plain", "resnet")
    )
    depths = ", ".join(str(int(d)) for d in means["plain"].index)
    lengths = {f: float(np.median(per[f]["length"])) for f in ("plain", "resnet")}
    measured = (
        f"lag-1 line correlation at depths {depths}: {listed}; kept from the shallowest to the "
        f"deepest depth: plain {share['plain'].mean():.2f}, residual {share['resnet'].mean():.2f}"
        f" (decay length {lengths['plain']:.3g} and {lengths['resnet']:.3g} layers); residual "
        f"minus plain {more:+.2f}"
        + ("" if ci is None else f" (95% interval {ci[0]:+.2f} to {ci[1]:+.2f})")
        + f" over {min(len(share['plain']), len(share['resnet']))} init seed(s)"
    )
    found = compare(more, ci, CORRELATION_MARGIN)
    if found is None:
        why = no_interval(share["plain"], share["resnet"]) or "the interval straddles the margin"
        return Finding(measured=measured, why=why)
    return Finding(SUPPORTED if found else CONTRADICTED, measured)


def landscape_per_net(numbers: pd.DataFrame) -> pd.DataFrame:
    """landscape.csv with family, depth and per-net shares: non-monotone 1-D curves over the
    curves drawn, extra 2-D minima per direction pair."""
    out = numbers.assign(
        family=numbers["net"].str.split("-").str[0],
        depth=numbers["net"].str.extract(r"-(\d+)")[0].astype(float),
    )
    if {"nonmonotone_1d", "curves_1d"} <= set(out):
        out = out.assign(nonmonotone_share=out["nonmonotone_1d"] / out["curves_1d"])
    if {"minima_2d", "pairs"} <= set(out):
        out = out.assign(minima_per_pair=out["minima_2d"] / out["pairs"])
    return out


@claim(
    10,
    "Skip connections keep the loss landscape near the solution smooth; deep plain nets' is "
    "chaotic",
    "Li et al. 2018",
    figure="landscape.png",
    probe="landscape",
    definition="Landscape (Li et al.; deepest nets, filter-normalised directions, one net per "
    "seed): the share of non-monotone 1-D curves from the weights outward over several "
    "direction pairs, and the mean over the 2-D grid of |lambda_min / lambda_max| of the "
    "Hessian (0 where no negative curvature; Lanczos on Hessian-vector products). Chaotic "
    f"(plain) against smooth (residual): the plain nets' share above the residual nets' by more "
    f"than {NONCONVEX_MARGIN:g} and their grid ratio by more than {RATIO_MARGIN:g} (95% "
    "intervals over seeds), both agreeing; contradicted when both are not above by their "
    "margins. A 1-D curve is non-monotone when it has a second basin (a peak between two dips, "
    "each deeper than a tolerance); the ratio at the weights and the count of extra 2-D minima "
    "are shown in the landscape section. The top eigenvalue "
    "(sharpness) is shown, not decided on: it is not scale-invariant for BN nets.",
)
def landscape(s: Sweep) -> Finding:
    numbers = landscape_per_net(s.probes["landscape"])
    if "nonmonotone_share" not in numbers or "ratio_grid_mean" not in numbers:
        why = "the landscape probe predates the eigenvalue ratio: re-run probe_landscape.py"
        return Finding(why=why)
    numbers = numbers[numbers["depth"] == numbers["depth"].max()]  # the deepest nets only
    per = {f: g for f, g in numbers.groupby("family")}
    if not {"plain", "resnet"} <= set(per):
        return Finding(why="needs landscapes of a plain and a residual net of the same depth")
    share = [per[f]["nonmonotone_share"].to_numpy(float) for f in ("plain", "resnet")]
    ratio = [per[f]["ratio_grid_mean"].to_numpy(float) for f in ("plain", "resnet")]
    curves = float(per["plain"]["curves_1d"].max()) if "curves_1d" in per["plain"] else 0.0
    # a share of k out of n curves moves in steps of 1/n: seeds all at one share keep that spread
    chaos, chaos_ci = difference(*share, resolution=1 / curves if curves else 0.0)
    rough, rough_ci = difference(*ratio)
    sharp = [per[f]["lambda_max"].mean() if "lambda_max" in per[f] else float("nan")
             for f in ("plain", "resnet")]  # fmt: skip

    def shown(value, ci):
        return f"{value:+.2f}" + (f" (95% interval {ci[0]:+.2f} to {ci[1]:+.2f})" if ci else "")

    measured = (
        f"non-monotone 1-D curves: plain {share[0].mean():.0%}, residual {share[1].mean():.0%}, "
        f"plain minus residual {shown(chaos, chaos_ci)}; grid mean |lambda_min/lambda_max|: "
        f"plain {ratio[0].mean():.3f}, residual {ratio[1].mean():.3f}, difference "
        f"{shown(rough, rough_ci)}; top eigenvalue plain {sharp[0]:.3g}, residual {sharp[1]:.3g}"
        f" (over {min(len(share[0]), len(share[1]))} net(s) each)"
    )
    by_curves = compare(chaos, chaos_ci, NONCONVEX_MARGIN)
    by_ratio = compare(rough, rough_ci, RATIO_MARGIN)
    if by_curves is None or by_ratio is None:
        why = no_interval(*share) or "an interval straddles its margin"
        return Finding(measured=measured, why=why)
    if by_curves and by_ratio:
        return Finding(SUPPORTED, measured)
    if not by_curves and not by_ratio:
        return Finding(CONTRADICTED, measured)
    return Finding(measured=measured, why="the curves and the eigenvalue ratio disagree")
