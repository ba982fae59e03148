"""Does it happen? Deeper plain nets reach a higher training error, residual nets of the same
depth do not: the verdict per group of comparable runs, with 95% intervals across seeds, and the
paper's Fig. 6 and Fig. 1 drawn from the training curves.

Nothing here is written by hand: every sentence of the verdict is computed from the runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from degradation.analysis.base import Context, Section
from degradation.analysis.select import GROUP_COLUMNS, comparable, comparable_metrics, left_out
from degradation.analysis.stats import MARGIN, MIN_SEEDS, compare, difference, interval, points
from degradation.analysis.style import (
    FAMILY_ORDER,
    FAMILY_TITLES,
    ZOOM_FROM,
    depth_colors,
    seed_band,
    smooth_train_error,
    upper_limit,
)

TITLE = "Does it happen? Degradation and the residual fix"
NEEDS = "finished plain nets of two or more depths, and residual nets of the same depths"


@dataclass
class FamilyTrend:
    """How one family's training error changes with depth, per depth over seeds."""

    family: str
    depths: list[int]
    finals: list[np.ndarray]  # final training error of each seed, per depth
    lates: list[np.ndarray]  # training error over the last 20% of each seed, per depth

    @property
    def final(self) -> list[float]:
        """Mean final training error per depth."""
        return [float(v.mean()) for v in self.finals]

    @property
    def late(self) -> list[float]:
        """Mean training error over the last 20% per depth."""
        return [float(v.mean()) for v in self.lates]

    @property
    def std(self) -> list[float]:
        """Standard deviation over seeds of the final training error per depth."""
        return [float(v.std(ddof=1)) if len(v) > 1 else math.nan for v in self.finals]

    def rise(self, late: bool = False) -> tuple[float, tuple[float, float] | None]:
        """Deepest minus shallowest training error (final or last 20%) and its 95% interval."""
        values = self.lates if late else self.finals
        return difference(values[-1], values[0])

    @property
    def rise_final(self) -> float:
        """Deepest minus shallowest final training error."""
        return self.rise()[0]

    @property
    def rise_late(self) -> float:
        """Deepest minus shallowest training error over the last part of training."""
        return self.rise(late=True)[0]

    def rises(self, margin: float = MARGIN) -> bool | None:
        """Is the deepest net's final training error higher by more than ``margin``? None when
        its interval straddles the margin or there is none (the ledger's claims 1 and 3)."""
        return compare(*self.rise(), margin)

    def monotonic(self) -> bool:
        """Each deeper net has a higher mean final training error than the one before."""
        return all(b > a for a, b in zip(self.final, self.final[1:], strict=False))


@dataclass
class Verdict:
    """The computed answer for one group of comparable runs."""

    group: dict
    plain: FamilyTrend | None
    resnet: FamilyTrend | None
    # depth -> plain minus residual training error: ((final, interval), (last 20%, interval))
    gaps: dict[int, tuple[tuple[float, tuple | None], tuple[float, tuple | None]]] = field(
        default_factory=dict
    )
    margin: float = MARGIN

    @property
    def degradation(self) -> bool | None:
        """True or False, or None when not measurable or not decided by the intervals."""
        if not self.plain or len(self.plain.depths) < 2:
            return None
        return self.plain.rises(self.margin)

    @property
    def residual_fix(self) -> bool | None:
        """Residual nets do not get worse with depth and beat the plain net at the deepest depth
        (None when not measurable or not decided)."""
        if not self.resnet or not self.gaps:
            return None
        final, _ = self.gaps[max(self.gaps)]
        beats = compare(*final, self.margin)
        rises = self.resnet.rises(self.margin) if len(self.resnet.depths) > 1 else False
        if rises is True or beats is False:
            return False
        if rises is False and beats is True:
            return True
        return None

    @property
    def reproduced(self) -> bool:
        return self.degradation is True and self.residual_fix is True


def _trend(runs: pd.DataFrame, family: str) -> FamilyTrend | None:
    rows = runs[(runs["family"] == family) & runs["final_train_error"].notna()]
    if rows.empty:
        return None
    groups = sorted(rows.groupby("depth"), key=lambda kv: kv[0])
    late = "late_train_error" if "late_train_error" in rows else "final_train_error"
    return FamilyTrend(
        family=family,
        depths=[int(d) for d, _ in groups],
        finals=[g["final_train_error"].to_numpy(float) for _, g in groups],
        lates=[g[late].fillna(g["final_train_error"]).to_numpy(float) for _, g in groups],
    )


def verdicts(runs: pd.DataFrame, margin: float = MARGIN) -> list[Verdict]:
    """One verdict per group of comparable finished runs (same data, width and length)."""
    done = comparable(runs)
    if done.empty:
        return []
    keys = [c for c in GROUP_COLUMNS if c in done]
    out = []
    for values, group in done.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        plain, resnet = _trend(group, "plain"), _trend(group, "resnet")
        if plain is None and resnet is None:  # e.g. dense nets alone: nothing to decide here
            continue
        gaps = {}
        if plain and resnet:
            for depth in sorted(set(plain.depths) & set(resnet.depths)):
                p, r = plain.depths.index(depth), resnet.depths.index(depth)
                gaps[depth] = (
                    difference(plain.finals[p], resnet.finals[r]),
                    difference(plain.lates[p], resnet.lates[r]),
                )
        group_values = {k: int(v) if isinstance(v, float) and v.is_integer() else v
                        for k, v in zip(keys, values, strict=True)}  # fmt: skip
        out.append(Verdict(group_values, plain, resnet, gaps, margin))
    return out


def _series(trend: FamilyTrend) -> str:
    parts = []
    for d, f, s in zip(trend.depths, trend.final, trend.std, strict=True):
        spread = "" if math.isnan(s) else f" ± {100 * s:.1f}"
        parts.append(f"{trend.family}-{d} {100 * f:.1f}%{spread}")
    return ", ".join(parts)


def _rise_text(trend: FamilyTrend) -> str:
    (final, fci), (late, lci) = trend.rise(), trend.rise(late=True)
    return (
        f"Deepest minus shallowest: {points(final)}{interval(fci)} at the end of training, "
        f"{points(late)}{interval(lci)} over its last 20%."
    )


WORDS = {True: "yes", False: "no", None: "not decided"}


def verdict_text(verdict: Verdict) -> str:
    """The verdict in words, with its numbers and intervals."""
    lines = []
    p, r = verdict.plain, verdict.resnet
    seeds = min((len(v) for t in (p, r) if t for v in t.finals), default=1)
    if p is None or len(p.depths) < 2:
        lines.append("**Degradation: not measurable** (needs plain nets of at least two depths).")
    else:
        state = verdict.degradation
        how = {True: "rises", False: "does not rise", None: "may rise"}[state]
        order = " at every step in depth" if state and p.monotonic() else ""
        why = (
            f" (no interval on one side of the {100 * verdict.margin:.0f}-point margin: "
            f"{MIN_SEEDS} or more seeds per net would decide)"
            if state is None
            else ""
        )
        lines.append(
            f"**Degradation: {WORDS[state]}.**{why} The final training error of plain nets "
            f"{how} with depth{order}: {_series(p)}. {_rise_text(p)}"
        )
    if r is None:
        lines.append("**Residual fix: not measurable** (no residual nets in this group).")
    else:
        if len(r.depths) > 1:
            how = {True: "rises", False: "does not rise", None: "may rise"}[r.rises(verdict.margin)]
            trend = (
                f"The final training error of residual nets {how} with depth: {_series(r)}. "
                + _rise_text(r)
            )
        else:
            trend = f"Residual nets: {_series(r)}."
        if verdict.gaps:
            deepest = max(verdict.gaps)
            gap_text = "; ".join(
                f"depth {d}: {points(f[0])}{interval(f[1])} (last 20%: {points(lt[0])})"
                for d, (f, lt) in verdict.gaps.items()
            )
            final, ci = verdict.gaps[deepest][0]
            ends = {
                True: "below its plain twin by more than the margin",
                False: "not below its plain twin by more than the margin",
                None: "below or above its plain twin: not decided",
            }[compare(final, ci, verdict.margin)]
            gap = (
                f" Plain minus residual training error at each depth: {gap_text}. At depth "
                f"{deepest} the residual net ends {ends}."
            )
        else:
            gap = " No depth has both a plain and a residual net, so there is no gap to measure."
        word = "not measurable" if not verdict.gaps else WORDS[verdict.residual_fix]
        lines.append(f"**Residual fix: {word}.** {trend}{gap}")
    if verdict.reproduced:
        steps = verdict.group.get("max_steps")
        after = f"After {int(steps)} iterations" if steps is not None and steps == steps else "Here"
        summary = (
            f"{after}, deeper plain nets train worse and residual nets of the same depth do not, "
            "as in the paper. Whether that is where training ends is decided on the "
            "training-budget axis (claim 2; experiment=budget_quick), not by one length."
        )
    else:
        summary = "The sweep does not reproduce the paper's result in full (see above)."
    lines.append(
        summary
        + (
            f" Intervals are 95% Welch t intervals over the seeds ({seeds} or more per net)."
            if seeds >= MIN_SEEDS
            else f" {seeds} seed(s) per net: no intervals, so no difference is decided (a "
            f"verdict needs {MIN_SEEDS} seeds per net; experiment=quick_seeds)."
        )
    )
    return "\n\n".join(lines)


def draw_family(ax, metrics: pd.DataFrame, family: str, colors: dict) -> list[float]:
    """Dashed smoothed training error and bold test error, one color per depth, on ``ax``;
    return the y-values that matter for the axis range (errors after ``ZOOM_FROM``, in %)."""
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
        label = f"{family}-{int(depth)}"
        if len(tested):
            test = seed_band(tested, "test_error")
            tx, tmean = test["step"].to_numpy(), 100 * test["mean"].to_numpy()
            tstd = 100 * test["std"].to_numpy()
            ax.plot(tx, tmean, "o-", color=color, linewidth=2.4, markersize=4, label=label)
            if (test["count"] > 1).any():
                ax.fill_between(tx, tmean - tstd, tmean + tstd, color=color, alpha=0.15, lw=0)
            relevant.extend(tmean[tx >= ZOOM_FROM * tx.max()].tolist())
        else:
            ax.plot([], [], "-", color=color, linewidth=2.4, label=label)
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
    families = [f for f in FAMILY_ORDER if f in set(metrics["family"])]
    if not families:
        raise ValueError("no plain, residual or dense runs with metrics to plot")
    colors = depth_colors(metrics["depth"])
    fig = Figure(figsize=(5.2 * len(families), 4.2), layout="constrained")
    axes = fig.subplots(1, len(families), sharey=True, squeeze=False)[0]
    relevant: list[float] = []
    for ax, family in zip(axes, families, strict=True):
        relevant += draw_family(ax, metrics, family, colors)
        _style_legend(ax)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, upper_limit(relevant))
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
        ax.set_ylim(0, upper_limit(rel))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"Plain networks, shallow vs deep; {_describe(chosen)}", fontsize=10)
    return fig


def section(ctx: Context) -> Section:
    """The verdict per group, then Fig. 6 and Fig. 1."""
    out = Section(TITLE)
    found = verdicts(ctx.runs)
    others = left_out(ctx.runs)
    if others:
        out.skipped.append(
            f"verdict, Fig. 6, Fig. 1 and convergence keep to the paper's design (BN, "
            f"post-activation basic units, identity shortcuts, default init; option A where "
            f"options vary): {len(others)} finished run(s) of other designs left out: "
            + ", ".join(others)
        )
    metrics = comparable_metrics(ctx.runs, ctx.metrics)
    if not found:
        out.lines.append("No finished runs, so no verdict.")
        out.skipped.append("verdict: no finished runs")
    for verdict in found:
        if len(found) > 1:
            out.lines += [f"### {', '.join(f'{k}={v}' for k, v in verdict.group.items())}", ""]
        out.lines += [verdict_text(verdict), ""]
    for name, maker, caption in (
        ("fig6", fig6, "Fig. 6 style: one panel per family"),
        ("fig1", fig1, "Fig. 1 style: shallowest vs deepest plain net"),
    ):
        if metrics.empty:
            out.skipped.append(f"{name}: no run has metrics yet")
            continue
        try:
            figure = maker(metrics)
        except ValueError as err:
            out.skipped.append(f"{name}: {err}")
            continue
        link = ctx.save_figure(figure, name)
        out.lines += [link.replace(f"![{name}]", f"![{caption}]"), ""]
    return out
