"""The figures' shared style: smoothed training curves, bands over seeds, one color per depth,
line style per family, and writing PNG + PDF. Every figure function of the analysis returns a
matplotlib ``Figure`` (no pyplot state), so the report, the notebook and the tests draw the
same thing."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

FAMILY_TITLES = {
    "plain": "plain networks",
    "resnet": "residual networks",
    "dense": "dense networks",
}
FAMILY_ORDER = ("plain", "resnet", "dense")
# Training-error curves are running means over this fraction of the run's iterations.
SMOOTH_FRACTION = 0.04
# The y-axis is fitted to the curves from this fraction of training on (early errors are ~90%).
ZOOM_FROM = 0.25


def net_key(net: str) -> tuple:
    """Sort key for net names such as ``plain-20``: by family, then depth."""
    family, _, depth = net.partition("-")
    order = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (order, family, int(depth) if depth.isdigit() else 0, net)


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


def upper_limit(values: list[float]) -> float:
    """A y-axis top (in %) a little above the largest relevant value."""
    top = max((v for v in values if not math.isnan(v)), default=100.0)
    return min(100.0, max(5.0, math.ceil(top * 1.15 / 5) * 5))


def net_styles(nets) -> dict:
    """Color by depth, line style by family: plain dashed with open markers, others solid."""
    depths = sorted({int(n.split("-")[1]) for n in nets})
    colors = depth_colors(depths)
    return {
        n: {
            "color": colors[int(n.split("-")[1])],
            "linestyle": "--" if n.startswith("plain") else ":" if n.startswith("dense") else "-",
            "marker": "o",
            "markerfacecolor": "none" if n.startswith("plain") else None,
            "markersize": 3,
        }
        for n in nets
    }


def save(fig: Figure, path, formats: tuple[str, ...] = ("png", "pdf")) -> None:
    """Write a figure at a resolution readable in a README, in each format (``path``'s suffix
    is replaced)."""
    for fmt in formats:
        fig.savefig(Path(path).with_suffix(f".{fmt}"), dpi=130)
