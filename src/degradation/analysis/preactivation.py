"""Does pre-activation ease optimization? Nets of the same depth built from the 2015 unit
(post-activation: conv-BN-ReLU, ReLU after the addition) and from the full pre-activation unit
(BN-ReLU-conv, nothing after the addition; He et al. 2016): their training curves side by side,
their final errors, and the paper's numbers where the setting matches (CIFAR-10)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from degradation.analysis.base import Context, Section, table_section
from degradation.analysis.final_errors import mean_std
from degradation.analysis.stats import difference
from degradation.analysis.style import ZOOM_FROM, seed_band, smooth_train_error, upper_limit
from degradation.paper import PREACT_2016
from degradation.results import setting_table

TITLE = "Post- vs pre-activation (He et al. 2016)"
NEEDS = "nets of one depth with block=post and block=preact (experiment=preact_quick)"
# He et al. 2016, CIFAR-10 test error (%), post -> full pre-activation, by depth and unit.
PAPER = PREACT_2016
STYLE = {"post": "--", "preact": "-"}


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished residual and plain runs at the (family, depth, unit) settings that have both
    blocks."""
    if "block" not in runs:
        return runs[:0]
    done = runs[(runs["status"] == "finished") & runs["block"].isin(["post", "preact"])]
    keys = [c for c in ("family", "depth", "unit") if c in done]
    both = done.groupby(keys, dropna=False)["block"].transform("nunique") == 2
    return done[both]


def block_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per net and block: errors over seeds and the paper's number where it applies."""
    chosen = paired(runs)
    if chosen.empty:
        return pd.DataFrame()
    table = setting_table(runs[runs["run"].isin(chosen["run"])])
    rows = []
    for _, row in table.iterrows():
        unit = row.get("unit", "basic")
        paper = None
        if row.get("data") == "cifar10" and row["family"] == "resnet" and row.get("width") == 16:
            paper = PAPER.get((int(row["depth"]), unit), {}).get(row["block"])
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "unit": unit,
                "block": row["block"],
                "seeds": int(row["seeds"]),
                "params": int(row["params"]) if not pd.isna(row["params"]) else None,
                "train error (%)": mean_std(row, "final_train_error"),
                "test error (%)": mean_std(row, "final_test_error"),
                "paper test error (%)": paper,
            }
        )
    return pd.DataFrame(rows)


def preact_lead(runs: pd.DataFrame, family: str = "resnet"):
    """At the deepest depth with both blocks: post minus pre-activation final training error
    (positive: pre-activation trains better), its 95% interval, and that depth (None if none)."""
    chosen = paired(runs)
    chosen = chosen[chosen["family"] == family]
    if chosen.empty:
        return None
    depth = int(chosen["depth"].max())
    at = chosen[chosen["depth"] == depth]
    post = at[at["block"] == "post"]["final_train_error"].to_numpy(float)
    pre = at[at["block"] == "preact"]["final_train_error"].to_numpy(float)
    diff, ci = difference(post, pre)
    return diff, ci, depth


def figure(metrics: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """One panel per (family, depth): smoothed training error (thin) and test error (bold) of
    the post (dashed) and pre-activation (solid) nets."""
    chosen = paired(runs)
    if chosen.empty:
        raise ValueError("no depth has both post- and pre-activation nets")
    metrics = metrics[metrics["run"].isin(chosen["run"])]
    panels = sorted(chosen.groupby(["family", "depth"]).groups)
    fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    relevant: list[float] = []
    for ax, (family, depth) in zip(axes, panels, strict=True):
        sub = metrics[(metrics["family"] == family) & (metrics["depth"] == depth)]
        for block, color in (("post", "tab:orange"), ("preact", "tab:blue")):
            one = sub[sub["block"] == block]
            train = seed_band(smooth_train_error(one), "train_smooth")
            x, y = train["step"].to_numpy(), 100 * train["mean"].to_numpy()
            ax.plot(x, y, STYLE[block], color=color, linewidth=1.1, label=f"{block}, training")
            relevant += y[x >= ZOOM_FROM * x.max()].tolist() if len(x) else []
            tested = one.dropna(subset=["test_error"])
            if len(tested):
                test = seed_band(tested, "test_error")
                tx, ty = test["step"].to_numpy(), 100 * test["mean"].to_numpy()
                ax.plot(
                    tx, ty, "o" + STYLE[block], color=color, lw=2.2, ms=3, label=f"{block}, test"
                )
        ax.set(title=f"{family}-{int(depth)}", xlabel="iterations")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, upper_limit(relevant))
    fig.suptitle("Post-activation (dashed) vs full pre-activation (solid) units", fontsize=10)
    return fig


def section(ctx: Context) -> Section:
    """The table (also preactivation.csv) and the curves."""
    out = table_section(
        ctx, TITLE, NEEDS, block_table(ctx.runs), "preactivation", "Mean ± std over seeds."
    )
    if not out.answered:
        return out
    out.lines.append("")
    if ctx.metrics.empty:
        out.skipped.append("curves: no metrics")
    else:
        out.lines.append(ctx.save_figure(figure(ctx.metrics, ctx.runs), "preactivation"))
    return out
