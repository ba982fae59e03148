"""Paper-style figures from a metrics table (see :func:`degradation.results.collect`).

Every function takes tables and returns a matplotlib ``Figure`` (no pyplot state), so the
analysis script, the notebook and the tests draw the same thing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

FAMILY_TITLES = {"plain": "plain networks", "resnet": "residual networks"}
# Training-error curves are running means over this fraction of the run's iterations.
SMOOTH_FRACTION = 0.04
# The y-axis is fitted to the curves from this fraction of training on (early errors are ~90%).
ZOOM_FROM = 0.25


def smooth_train_error(metrics: pd.DataFrame, fraction: float = SMOOTH_FRACTION) -> pd.DataFrame:
    """Per run, the running mean of the per-batch training error (column ``train_smooth``)."""
    train = metrics.dropna(subset=["train_error"]).sort_values(["run", "step"])
    parts = []
    for _, run in train.groupby("run", sort=False):
        window = max(1, round(fraction * len(run)))
        parts.append(run.assign(train_smooth=run["train_error"].rolling(window, 1).mean()))
    return pd.concat(parts) if parts else train.assign(train_smooth=[])


def seed_band(frame: pd.DataFrame, column: str, by: str = "step") -> pd.DataFrame:
    """Mean and standard deviation over seeds (runs) of ``column`` at each ``by`` value."""
    stats = frame.groupby(by)[column].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def depth_colors(depths) -> dict:
    """One color per depth, the same in every panel (light to dark as depth grows)."""
    from matplotlib import colormaps

    depths = sorted(set(int(d) for d in depths))
    cmap = colormaps["viridis"]
    if len(depths) == 1:
        return {depths[0]: cmap(0.3)}
    return {d: cmap(0.75 * (1 - i / (len(depths) - 1))) for i, d in enumerate(depths)}


def _upper_limit(values: list[float]) -> float:
    top = max((v for v in values if not math.isnan(v)), default=100.0)
    return min(100.0, max(5.0, math.ceil(top * 1.15 / 5) * 5))


def draw_family(ax, metrics: pd.DataFrame, family: str, colors: dict) -> list[float]:
    """Dashed smoothed training error and bold test error, one color per depth, on ``ax``.

    Returns the y-values that matter for choosing the axis range (errors after the first
    ``ZOOM_FROM`` of training, in %).
    """
    fam = metrics[metrics["family"] == family]
    smoothed = smooth_train_error(fam)
    relevant: list[float] = []
    for depth in sorted(fam["depth"].unique()):
        color = colors[int(depth)]
        train = seed_band(smoothed[smoothed["depth"] == depth], "train_smooth")
        x = train["step"].to_numpy()
        mean, std = 100 * train["mean"].to_numpy(), 100 * train["std"].to_numpy()
        ax.plot(x, mean, "--", color=color, linewidth=1.1)
        if (train["count"] > 1).any():
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        if len(x):
            relevant.extend(mean[x >= ZOOM_FROM * x.max()].tolist())
        tested = fam[(fam["depth"] == depth)].dropna(subset=["test_error"])
        if len(tested):
            test = seed_band(tested, "test_error")
            tx, tmean = test["step"].to_numpy(), 100 * test["mean"].to_numpy()
            tstd = 100 * test["std"].to_numpy()
            label = f"{family}-{int(depth)}"
            ax.plot(tx, tmean, "o-", color=color, linewidth=2.4, markersize=4, label=label)
            if (test["count"] > 1).any():
                ax.fill_between(tx, tmean - tstd, tmean + tstd, color=color, alpha=0.15, lw=0)
            relevant.extend(tmean[tx >= ZOOM_FROM * tx.max()].tolist())
        else:
            ax.plot([], [], "-", color=color, linewidth=2.4, label=f"{family}-{int(depth)}")
    ax.set_title(FAMILY_TITLES.get(family, family))
    ax.set_xlabel("iterations")
    ax.grid(True, alpha=0.3)
    return relevant


def _style_legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.1),
        Line2D([], [], color="0.3", linestyle="-", linewidth=2.4),
    ]
    labels += ["training error", "test error"]
    ax.legend(handles, labels, loc="upper right", fontsize=8, framealpha=0.9)


def _describe(metrics: pd.DataFrame) -> str:
    data = ", ".join(sorted(str(d) for d in metrics["data"].dropna().unique()))
    seeds = metrics.groupby("net")["seed"].nunique().max() if "seed" in metrics else 1
    return f"{data}; {int(seeds)} seed{'s' if seeds != 1 else ''} per net"


def fig6(metrics: pd.DataFrame) -> Figure:
    """Fig. 6 style: one panel per family, training (dashed) and test (bold) error vs iterations."""
    families = [f for f in ("plain", "resnet") if f in set(metrics["family"])]
    if not families:
        raise ValueError("no plain or residual runs with metrics to plot")
    colors = depth_colors(metrics["depth"])
    fig = Figure(figsize=(5.2 * len(families), 4.2), layout="constrained")
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    relevant: list[float] = []
    for ax, family in zip(axes, families, strict=True):
        relevant += draw_family(ax, metrics, family, colors)
        _style_legend(ax)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, _upper_limit(relevant))
    fig.suptitle(f"Training (dashed) and test (bold) error; {_describe(metrics)}", fontsize=10)
    return fig


def fig1(metrics: pd.DataFrame) -> Figure:
    """Fig. 1 style: the shallowest and deepest plain nets, training error left, test right."""
    plain = metrics[metrics["family"] == "plain"]
    depths = sorted(plain["depth"].unique())
    if len(depths) < 2:
        raise ValueError("Fig. 1 needs plain runs of at least two depths")
    chosen = plain[plain["depth"].isin([depths[0], depths[-1]])]
    colors = {int(depths[0]): "tab:orange", int(depths[-1]): "tab:red"}
    fig = Figure(figsize=(9.5, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=False)
    smoothed = smooth_train_error(chosen)
    relevant_train, relevant_test = [], []
    for depth in (depths[0], depths[-1]):
        color, label = colors[int(depth)], f"{int(depth)}-layer"
        train = seed_band(smoothed[smoothed["depth"] == depth], "train_smooth")
        x, y = train["step"].to_numpy(), 100 * train["mean"].to_numpy()
        left.plot(x, y, color=color, label=label)
        relevant_train += y[x >= ZOOM_FROM * x.max()].tolist() if len(x) else []
        tested = chosen[chosen["depth"] == depth].dropna(subset=["test_error"])
        if len(tested):
            test = seed_band(tested, "test_error")
            tx, ty = test["step"].to_numpy(), 100 * test["mean"].to_numpy()
            right.plot(tx, ty, "o-", color=color, label=label, markersize=3)
            relevant_test += ty[tx >= ZOOM_FROM * tx.max()].tolist()
    for ax, title, rel in (
        (left, "training error", relevant_train),
        (right, "test error", relevant_test),
    ):
        ax.set_title(title)
        ax.set_xlabel("iterations")
        ax.set_ylabel(f"{title} (%)")
        ax.set_ylim(0, _upper_limit(rel))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"Plain networks, shallow vs deep; {_describe(chosen)}", fontsize=10)
    return fig


def save(fig: Figure, path) -> None:
    """Write a figure as PNG at a resolution readable in a README, and as PDF beside it (for
    papers)."""
    fig.savefig(path, dpi=130)
    fig.savefig(Path(path).with_suffix(".pdf"))


def _net_style(nets) -> dict:
    """Color by depth, line style by family: plain dashed with open markers, residual solid."""
    depths = sorted({int(n.split("-")[1]) for n in nets})
    colors = depth_colors(depths)
    return {
        n: {
            "color": colors[int(n.split("-")[1])],
            "linestyle": "--" if n.startswith("plain") else "-",
            "marker": "o",
            "markerfacecolor": "none" if n.startswith("plain") else None,
            "markersize": 3,
        }
        for n in nets
    }


def fig7(responses: pd.DataFrame) -> Figure:
    """Fig. 7 style: std of each 3x3 layer's response, in layer order (top) and sorted (bottom)."""
    if responses.empty:
        raise ValueError("no layer responses to plot")
    means = responses.groupby(["net", "family", "depth", "layer"])["std"].mean().reset_index()
    nets = sorted(means["net"].unique(), key=lambda n: (n.split("-")[0], int(n.split("-")[1])))
    styles = _net_style(nets)
    fig = Figure(figsize=(8.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for net in nets:
        values = means[means["net"] == net].sort_values("layer")["std"].to_numpy()
        x = range(1, len(values) + 1)
        top.plot(x, values, label=net, **styles[net])
        bottom.plot(x, sorted(values, reverse=True), label=net, **styles[net])
    top.set(xlabel="layer index (original order)", ylabel="std of response")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std of response")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize=8, ncol=2)
    fig.suptitle(
        "Std of each 3x3 layer's response (after BN, before ReLU/addition), test set", fontsize=10
    )
    return fig


def gradient_profiles(grads: pd.DataFrame, points: int = 3) -> Figure:
    """Per-layer gradient norm of the shallowest and deepest plain and residual nets, at a few
    points in training (log scale)."""
    if grads.empty:
        raise ValueError("no gradient norms were logged (callbacks.gradients)")
    panels = []
    for family in ("plain", "resnet"):
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
    nets = sorted(spread["net"].unique(), key=lambda n: (n.split("-")[0], int(n.split("-")[1])))
    styles = _net_style(nets)
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
