"""Do gradients vanish during training? The L2 norm of the loss gradient with respect to each
conv layer's weights, logged during training by :class:`degradation.callbacks.GradientNorms` as
``grad_conv{i}`` (the paper's Section 4.1 argues BN keeps them healthy)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from degradation.analysis.base import Context, Section
from degradation.analysis.select import comparable, main_group, metrics_of
from degradation.analysis.stats import (
    MIN_SEEDS,
    UNDECIDED,
    Reading,
    compare,
    mean_interval,
    no_interval,
    reading,
)
from degradation.analysis.style import FAMILY_ORDER, net_key, net_styles

TITLE = "Gradient norms during training"
NEEDS = "runs that logged per-layer gradient norms (callbacks.gradients, on by default)"
GRAD_PREFIX = "grad_conv"
# A per-layer gradient norm below this fraction of the largest counts as vanished.
VANISH_RATIO = 1e-3


def gradient_columns(metrics: pd.DataFrame) -> list[str]:
    """The per-layer gradient-norm columns in layer order."""
    cols = [c for c in metrics.columns if c.startswith(GRAD_PREFIX)]
    return sorted(cols, key=lambda c: int(c[len(GRAD_PREFIX) :]))


def gradient_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Tidy gradient norms: run, net, family, depth, seed, step, layer, norm."""
    cols = gradient_columns(metrics)
    if not cols:
        return pd.DataFrame(
            columns=["run", "net", "family", "depth", "seed", "step", "layer", "norm"]
        )
    logged = metrics.dropna(subset=cols, how="all")
    tidy = logged.melt(
        id_vars=["run", "net", "family", "depth", "seed", "step"],
        value_vars=cols,
        var_name="layer",
        value_name="norm",
    ).dropna(subset=["norm"])
    tidy["layer"] = tidy["layer"].str[len(GRAD_PREFIX) :].astype(int)
    return tidy.sort_values(["run", "step", "layer"], ignore_index=True)


def in_channels_of(data: str) -> int:
    """Image channels of the data set named ``data`` (its data module's ``in_channels``)."""
    from degradation import data as datasets

    found = {}
    pending = [datasets.ImageDataModule]
    while pending:
        cls = pending.pop()
        found.setdefault(getattr(cls, "name", ""), getattr(cls, "in_channels", 3))
        pending += cls.__subclasses__()
    return int(found.get(data, 3))


@functools.lru_cache(maxsize=64)
def layer_sizes(family: str, depth: int, width: int, in_channels: int) -> tuple[int, ...]:
    """Weights per 3x3 conv, in the forward order the gradient logger uses, of a CIFAR-family
    net (built once, not trained)."""
    from degradation.models import cifar_net

    net = cifar_net(depth, family == "resnet", "A", width, in_channels, 10)
    return tuple(
        m.weight.numel()
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    )


def run_vanishing(grads: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """Per run: the median over its logged steps after step 0 of the smallest over the largest
    per-weight RMS gradient (L2 norm / sqrt(layer size)) of its 3x3 convs; runs whose layer count
    does not match their design's are left out."""
    info = runs.drop_duplicates("run").set_index("run")
    out = {}
    for run, group in grads[grads["step"] > 0].groupby("run"):
        if run not in info.index:
            continue
        row = info.loc[run]
        try:  # the 2015 CIFAR family (6n+2, basic units); another design has no sizes here
            sizes = layer_sizes(
                str(row["family"]), int(row["depth"]), int(row["width"]),
                in_channels_of(str(row.get("data", ""))),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            continue
        ratios = []
        for _, at in group.groupby("step"):
            at = at.sort_values("layer")
            if len(at) != len(sizes):
                break
            rms = at["norm"].to_numpy(float) / np.sqrt(np.asarray(sizes, dtype=float))
            ratios.append(rms.min() / rms.max() if rms.max() > 0 else math.nan)
        else:
            if ratios:
                out[run] = float(np.nanmedian(ratios))
    return pd.Series(out, dtype=float)


def read_vanishing(grads: pd.DataFrame, runs: pd.DataFrame) -> Reading | None:
    """Claim 4's reading on the deepest plain net (None without plain gradient norms): do its
    gradients vanish, by the 95% interval over seeds of log10 of :func:`run_vanishing`?"""
    plain = grads[grads["family"] == "plain"] if len(grads) else grads
    if plain.empty:
        return None
    depth = int(plain["depth"].max())
    per_run = run_vanishing(plain[plain["depth"] == depth], runs)
    if per_run.empty:
        return Reading(UNDECIDED, "-", f"plain-{depth}: no gradient norms logged after step 0")
    logs = np.log10(per_run.to_numpy(float))
    mean, ci = mean_interval(logs, MIN_SEEDS)
    ends = "" if ci is None else f" (95% interval {10 ** ci[0]:.2g} to {10 ** ci[1]:.2g})"
    measured = (
        f"plain-{depth}: smallest/largest per-weight RMS layer gradient, median over logged "
        f"steps: {10**mean:.2g}{ends} over {len(logs)} seed(s)"
    )
    # vanished: log10 ratio below log10(VANISH_RATIO), i.e. its negative above the threshold's
    found = compare(-mean, None if ci is None else (-ci[1], -ci[0]), -math.log10(VANISH_RATIO))
    return reading(found, measured, no_interval(logs) or "the interval straddles the threshold")


def gradient_spread(grads: pd.DataFrame) -> pd.DataFrame:
    """Per run and logged step: smallest/largest per-layer norm and first/last layer ratio."""

    def stats(group: pd.DataFrame) -> pd.Series:
        norms = group.sort_values("layer")["norm"].to_numpy()
        return pd.Series(
            {
                "min_over_max": norms.min() / norms.max() if norms.max() > 0 else math.nan,
                "first_over_last": norms[0] / norms[-1] if norms[-1] > 0 else math.nan,
            }
        )

    keys = ["run", "net", "family", "depth", "seed", "step"]
    return grads.groupby(keys).apply(stats, include_groups=False).reset_index()


def gradients_text(spread: pd.DataFrame, verdict: Reading | None = None) -> str:
    """Smallest/largest per-layer gradient norm per net, and ``verdict`` (the reading of
    :func:`read_vanishing`, the ledger's claim 4) on the deepest plain net."""
    lines = []
    for net, group in sorted(spread.groupby("net"), key=lambda kv: net_key(kv[0])):
        ratio = group["min_over_max"]
        lines.append(
            f"{net}: smallest/largest per-layer gradient norm (L2, not per weight), median over "
            f"logged steps {ratio.median():.3g} (lowest {ratio.min():.3g}); first/last layer "
            f"median {group['first_over_last'].median():.3g}"
        )
    head = ""
    if verdict is not None:
        why = f" ({verdict.why})" if verdict.why else ""
        head = (
            f"**Vanishing gradients (claim 4): {verdict.verdict}**{why}. {verdict.measured}; a "
            f"layer counts as vanished below {VANISH_RATIO:g} times the largest."
        )
    return head + "\n\n" + "\n".join(f"- {line}" for line in lines)


def gradient_profiles(grads: pd.DataFrame, points: int = 3) -> Figure:
    """Per-layer gradient norm of the shallowest and deepest plain and residual nets, at a few
    points in training (log scale)."""
    if grads.empty:
        raise ValueError("no gradient norms were logged (callbacks.gradients)")
    panels = []
    for family in FAMILY_ORDER:
        depths = sorted(grads.loc[grads["family"] == family, "depth"].unique())
        panels += [(family, d) for d in dict.fromkeys([depths[0], depths[-1]])] if depths else []
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    steps = sorted(grads["step"].unique())
    chosen = [steps[round(i * (len(steps) - 1) / max(1, points - 1))] for i in range(points)]
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    for ax, (family, depth) in zip(axes, panels, strict=True):
        sub = grads[(grads["family"] == family) & (grads["depth"] == depth)]
        for j, step in enumerate(dict.fromkeys(chosen)):
            at = sub[sub["step"] == step].groupby("layer")["norm"].mean()
            ax.plot(
                at.index,
                at.to_numpy(),
                "o-",
                markersize=3,
                color=cmap(0.8 * j / max(1, points - 1)),
                label=f"step {int(step)}",
            )
        ax.set_yscale("log")
        ax.set(title=f"{family}-{int(depth)}", xlabel="conv layer (input to output)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient norm of layer weights")
    fig.suptitle("Per-layer gradient norms during training", fontsize=10)
    return fig


def gradient_ratios(spread: pd.DataFrame) -> Figure:
    """First-layer / last-layer gradient norm over training, one line per net (log scale)."""
    if spread.empty:
        raise ValueError("no gradient norms were logged (callbacks.gradients)")
    nets = sorted(spread["net"].unique(), key=net_key)
    styles = net_styles(nets)
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for net in nets:
        sub = spread[spread["net"] == net].groupby("step")["first_over_last"].mean()
        ax.plot(sub.index, sub.to_numpy(), label=net, **styles[net])
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    ax.set(xlabel="iterations", ylabel="first / last conv layer gradient norm")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return fig


def section(ctx: Context) -> Section:
    """The per-net ratios in words and two figures (also gradients.csv)."""
    runs = comparable(ctx.runs)  # the 2015 design, whose nets the names tell apart
    metrics = metrics_of(runs, ctx.metrics)
    grads = gradient_table(metrics) if len(metrics) else pd.DataFrame()
    finished = set(runs["run"])
    without = sorted(finished - set(grads["run"])) if len(grads) else sorted(finished)
    out = Section(TITLE)
    if without:
        out.skipped.append("gradient norms of runs that did not log them: " + ", ".join(without))
    if grads.empty:
        out.answered = False
        return out
    spread = gradient_spread(grads)
    ctx.save_table(spread, "gradients")
    main, _ = main_group(runs)  # the verdict's runs: those the ledger's claim 4 reads
    out.lines += [
        gradients_text(spread, read_vanishing(grads[grads["run"].isin(main["run"])], main)),
        "",
        ctx.save_figure(gradient_profiles(grads), "grad_profiles"),
        "",
        ctx.save_figure(gradient_ratios(spread), "grad_ratios"),
    ]
    return out
