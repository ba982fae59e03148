"""Do gradients vanish during training? The L2 norm of the loss gradient with respect to each
conv layer's weights, logged during training by :class:`degradation.callbacks.GradientNorms` as
``grad_conv{i}`` (the paper's Section 4.1 argues BN keeps them healthy)."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from degradation.analysis.base import Context, Section
from degradation.analysis.select import comparable, metrics_of
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


def gradients_text(spread: pd.DataFrame) -> str:
    """Smallest/largest per-layer gradient norm per net; does the deepest plain net's vanish?"""
    lines = []
    for net, group in sorted(spread.groupby("net"), key=lambda kv: net_key(kv[0])):
        ratio = group["min_over_max"]
        lines.append(
            f"{net}: smallest/largest per-layer gradient norm, median over logged steps "
            f"{ratio.median():.3g} (lowest {ratio.min():.3g}); first/last layer median "
            f"{group['first_over_last'].median():.3g}"
        )
    plain = spread[spread["family"] == "plain"]
    verdict = ""
    if len(plain):
        deepest = plain[plain["depth"] == plain["depth"].max()]
        low = deepest["min_over_max"].min()
        name = deepest["net"].iloc[0]
        vanish = low < VANISH_RATIO
        verdict = (
            f"**Vanishing gradients in {name}: {'yes' if vanish else 'no'}.** Over all logged "
            f"steps, its smallest per-layer gradient norm is at least {low:.3g} times its "
            f"largest (a layer counts as vanished below {VANISH_RATIO:g} times the largest)."
        )
    return verdict + "\n\n" + "\n".join(f"- {line}" for line in lines)


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
    out.lines += [
        gradients_text(spread),
        "",
        ctx.save_figure(gradient_profiles(grads), "grad_profiles"),
        "",
        ctx.save_figure(gradient_ratios(spread), "grad_ratios"),
    ]
    return out
