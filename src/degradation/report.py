"""The verdict on a sweep, its Table-6-style table, and the Markdown report.

Nothing here is written by hand: every sentence of the verdict is computed from the runs.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from degradation import diagnostics, plots
from degradation.analysis import convergence, ledger
from degradation.results import setting_table

# Table 6 of the paper: CIFAR-10 test error (%) of ResNets (option A, width 16), with augmentation.
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Table 2: ImageNet top-1 validation error (%, 10-crop), plain and residual 18/34 (width 64).
PAPER_TABLE2 = {("plain", 18): 27.94, ("plain", 34): 28.54, ("resnet", 18): 27.88,
                ("resnet", 34): 25.03}  # fmt: skip
# Differences smaller than this (in error fraction) count as "no change".
MARGIN = 0.01
# A per-layer gradient norm below this fraction of the largest counts as vanished.
VANISH_RATIO = 1e-3
# Columns that must agree for runs to be compared in one verdict.
GROUP_COLUMNS = ["data", "width", "max_steps"]


@dataclass
class FamilyTrend:
    """How one family's training error changes with depth."""

    family: str
    depths: list[int]
    final: list[float]  # mean over seeds of the final training error, per depth
    late: list[float]  # mean over seeds of the training error over the last part, per depth
    std: list[float] = field(default_factory=list)  # std over seeds of the final training error

    @property
    def rise_final(self) -> float:
        """Deepest minus shallowest final training error."""
        return self.final[-1] - self.final[0]

    @property
    def rise_late(self) -> float:
        """Deepest minus shallowest training error over the last part of training."""
        return self.late[-1] - self.late[0]

    def rises(self, margin: float = MARGIN) -> bool:
        """Training error of the deepest net is higher, at the end and over the last part."""
        return self.rise_final > margin and self.rise_late > margin

    def does_not_rise(self, margin: float = MARGIN) -> bool:
        """Training error of the deepest net is not higher, at the end and over the last part."""
        return self.rise_final <= margin and self.rise_late <= margin

    def monotonic(self) -> bool:
        """Each deeper net has a higher final training error than the one before."""
        return all(b > a for a, b in zip(self.final, self.final[1:], strict=False))


@dataclass
class Verdict:
    """The computed answer for one group of comparable runs."""

    group: dict
    plain: FamilyTrend | None
    resnet: FamilyTrend | None
    gaps: dict[int, tuple[float, float]]  # depth -> (plain - resnet final, late) training error
    margin: float = MARGIN

    @property
    def degradation(self) -> bool | None:
        return self.plain.rises(self.margin) if self.plain and len(self.plain.depths) > 1 else None

    @property
    def residual_fix(self) -> bool | None:
        """Residual nets do not get worse with depth and beat the plain net at the deepest depth."""
        if not self.resnet or not self.gaps:
            return None
        deepest = max(self.gaps)
        no_rise = len(self.resnet.depths) < 2 or self.resnet.does_not_rise(self.margin)
        return no_rise and self.gaps[deepest][0] > self.margin

    @property
    def reproduced(self) -> bool:
        return bool(self.degradation) and bool(self.residual_fix)


def _trend(table: pd.DataFrame, family: str) -> FamilyTrend | None:
    rows = table[table["family"] == family].sort_values("depth")
    if rows.empty:
        return None
    return FamilyTrend(
        family=family,
        depths=[int(d) for d in rows["depth"]],
        final=rows["final_train_error_mean"].tolist(),
        late=rows["late_train_error_mean"].tolist(),
        std=rows["final_train_error_std"].tolist(),
    )


def verdicts(runs: pd.DataFrame, margin: float = MARGIN) -> list[Verdict]:
    """One verdict per group of comparable finished runs (same data, width and length).

    Residual nets are compared with option-A shortcuts when several options are present.
    """
    table = setting_table(runs)
    table = table[table["seeds"] > 0]  # settings with no finished run: in the table, not here
    if table.empty:
        return []
    resnets = table[table["family"] == "resnet"]
    if "shortcut" in table and len(resnets) and (resnets["shortcut"] == "A").any():
        table = table[(table["family"] != "resnet") | (table["shortcut"] == "A")]
    keys = [c for c in GROUP_COLUMNS if c in table]
    out = []
    for values, group in table.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        plain, resnet = _trend(group, "plain"), _trend(group, "resnet")
        gaps = {}
        if plain and resnet:
            for depth in sorted(set(plain.depths) & set(resnet.depths)):
                p, r = plain.depths.index(depth), resnet.depths.index(depth)
                gaps[depth] = (plain.final[p] - resnet.final[r], plain.late[p] - resnet.late[r])
        out.append(Verdict(dict(zip(keys, values, strict=True)), plain, resnet, gaps, margin))
    return out


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} points"


def _series(trend: FamilyTrend) -> str:
    parts = []
    for d, f, s in zip(trend.depths, trend.final, trend.std or [math.nan] * 9, strict=False):
        spread = "" if s is None or math.isnan(s) else f" ± {100 * s:.1f}"
        parts.append(f"{trend.family}-{d} {100 * f:.1f}%{spread}")
    return ", ".join(parts)


def verdict_text(verdict: Verdict) -> str:
    """The verdict in words, with its numbers."""
    lines = []
    p, r = verdict.plain, verdict.resnet
    if verdict.degradation is None:
        lines.append("**Degradation: not measurable** (needs plain nets of at least two depths).")
    else:
        word = "yes" if verdict.degradation else "no"
        how = "rises" if verdict.degradation else "does not clearly rise"
        order = " at every step in depth" if p.monotonic() else ""
        lines.append(
            f"**Degradation: {word}.** The final training error of plain nets {how} with "
            f"depth{order if verdict.degradation else ''}: {_series(p)}. Deepest minus shallowest: "
            f"{_pts(p.rise_final)} at the end of training, {_pts(p.rise_late)} over its last "
            "20%."
        )
    if r is None:
        lines.append("**Residual fix: not measurable** (no residual nets in this group).")
    else:
        if len(r.depths) > 1:
            how = "does not rise" if r.does_not_rise(verdict.margin) else "rises"
            trend = (
                f"The final training error of residual nets {how} with depth: {_series(r)}. "
                f"Deepest minus shallowest: {_pts(r.rise_final)} at the end, "
                f"{_pts(r.rise_late)} over the last 20%."
            )
        else:
            trend = f"Residual nets: {_series(r)}."
        if verdict.gaps:
            deepest = max(verdict.gaps)
            gap_text = "; ".join(
                f"depth {d}: {_pts(g[0])} (last 20%: {_pts(g[1])})" for d, g in verdict.gaps.items()
            )
            gap = (
                f" Plain minus residual training error at each depth: {gap_text}. At depth "
                f"{deepest} the residual net ends "
                f"{'far ' if verdict.gaps[deepest][0] > 5 * verdict.margin else ''}"
                f"{'below' if verdict.gaps[deepest][0] > 0 else 'above'} its plain twin."
            )
        else:
            gap = " No depth has both a plain and a residual net, so there is no gap to measure."
        word = {True: "yes", False: "no", None: "not measurable"}[verdict.residual_fix]
        lines.append(f"**Residual fix: {word}.** {trend}{gap}")
    summary = (
        "The sweep reproduces the paper's result: deeper plain nets train worse, residual nets "
        "of the same depth do not."
        if verdict.reproduced
        else "The sweep does not reproduce the paper's result in full (see above)."
    )
    lines.append(summary)
    return "\n\n".join(lines)


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final training and test error per family and depth (mean ± std over seeds), params, and
    the paper's number where it applies: Table 6 (CIFAR-10 ResNets, width 16, option A) or
    Table 2 (ImageNet, 18 and 34 layers, width 64)."""
    table = setting_table(runs)
    rows = []
    for _, row in table.iterrows():
        paper = None
        if (
            row.get("data") == "cifar10"
            and row["family"] == "resnet"
            and row.get("width") == 16
            and row.get("shortcut") == "A"
        ):
            paper = PAPER_TABLE6.get(int(row["depth"]))
        elif row.get("data") == "imagenet" and row.get("width") == 64:
            paper = PAPER_TABLE2.get((row["family"], int(row["depth"])))
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "shortcut": row.get("shortcut", "-"),
                "width": int(row["width"]) if "width" in row else None,
                "data": row.get("data"),
                "iterations": int(row["max_steps"]) if "max_steps" in row else None,
                "seeds": int(row["seeds"]),
                "params": int(row["params"]) if not pd.isna(row["params"]) else None,
                "train error (%)": _mean_std(row, "final_train_error"),
                "train error, last 20% (%)": _mean_std(row, "late_train_error"),
                "test error (%)": _mean_std(row, "final_test_error"),
                "paper test error (%)": paper,
                "not finished": row.get("not_finished") or "",
            }
        )
    return pd.DataFrame(rows)


def _mean_std(row: pd.Series, name: str) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}")


def runs_overview(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per run: status, steps, wall time, final errors."""
    view = pd.DataFrame(
        {
            "run": runs["run"],
            "status": runs["status"],
            "steps": runs["steps"].astype("Int64") if "steps" in runs else None,
            "wall time (s)": runs.get("wall_time_s"),
            "train error (%)": (100 * runs["final_train_error"].astype(float)).round(2),
            "test error (%)": (100 * runs["final_test_error"].astype(float)).round(2),
            "note": [_run_note(r) for _, r in runs.iterrows()],
        }
    )
    return view


def _run_note(run: pd.Series) -> str:
    """Why a run is not in the verdict: divergence step, error message, or incompleteness."""
    status = run.get("status")
    if status == "diverged":
        return f"diverged at step {run.get('diverged_at_step')}: {run.get('error', '')}"
    if status in ("failed", "interrupted"):
        return str(run.get("error") or "")[:200]
    if status == "incomplete":
        return "no final summary (still running, or stopped; launch again to resume)"
    if status == "crashed":
        return (
            f"its process (pid {run.get('pid')}) died without a word (killed, out of memory, "
            "crash); launch again to resume from its last checkpoint"
        )
    if status == "running":
        return f"still training (pid {run.get('pid')})"
    return ""


def _median_by_net(responses: pd.DataFrame) -> pd.Series:
    return responses.groupby("net")["std"].median()


def responses_text(responses: pd.DataFrame) -> str:
    """Median layer response per net, and deepest residual vs deepest plain."""
    medians = _median_by_net(responses)
    order = sorted(medians.index, key=lambda n: (n.split("-")[0], int(n.split("-")[1])))
    listed = ", ".join(f"{n} {medians[n]:.3f}" for n in order)
    text = f"Median std of the 3x3 layers' responses: {listed}."
    deepest = {}
    for family in ("plain", "resnet"):
        nets = [n for n in order if n.startswith(family + "-")]
        if nets:
            deepest[family] = nets[-1]
    if len(deepest) == 2:
        p, r = deepest["plain"], deepest["resnet"]
        ratio = medians[r] / medians[p]
        text += (
            f" The deepest residual net's median response is {ratio:.2f} times that of the "
            f"deepest plain net ({r} {medians[r]:.3f} vs {p} {medians[p]:.3f}): "
            + (
                "residual responses are smaller, as in the paper's Fig. 7."
                if ratio < 1
                else "residual responses are not smaller, unlike the paper's Fig. 7."
            )
        )
    return text


def gradients_text(spread: pd.DataFrame) -> str:
    """Smallest/largest per-layer gradient norm per net; does the deepest plain net's vanish?"""
    lines = []
    for net, group in sorted(
        spread.groupby("net"), key=lambda kv: (kv[0].split("-")[0], int(kv[0].split("-")[1]))
    ):
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


def shortcut_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Table 3 style: plain vs shortcut options A/B/C at each depth (None if < 2 options)."""
    table = setting_table(runs)
    table = table[table["seeds"] > 0]
    if table.empty or "shortcut" not in table:
        return None
    options = set(table.loc[table["family"] == "resnet", "shortcut"]) - {"-"}
    if len(options) < 2:
        return None
    rows = []
    for _, row in table.sort_values(["depth", "family", "shortcut"]).iterrows():
        residual = row["family"] == "resnet"
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "shortcut": row["shortcut"] if residual else "none (plain)",
                "seeds": int(row["seeds"]),
                "params": int(row["params"]) if not pd.isna(row["params"]) else None,
                "train error (%)": _mean_std(row, "final_train_error"),
                "test error (%)": _mean_std(row, "final_test_error"),
            }
        )
    return pd.DataFrame(rows)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def diagnostics_section(
    runs: pd.DataFrame, metrics: pd.DataFrame, out_dir: Path, written: dict, notes: list[str]
) -> list[str]:
    """Report lines (and figures) on layer responses, gradient norms and shortcut options."""
    lines = ["## Why: layer responses and gradient norms", ""]
    responses, skipped = diagnostics.responses_table(runs, progress=_progress)
    notes += [f"layer responses of {msg}" for msg in skipped]
    if responses.empty:
        notes.append("fig7.png skipped: no finished run has a final checkpoint or responses.csv.")
    else:
        responses.to_csv(out_dir / "responses.csv", index=False)
        plots.save(plots.fig7(responses), out_dir / "fig7.png")
        written["fig7"] = out_dir / "fig7.png"
        lines += [
            "### Layer responses (Fig. 7 style)",
            "",
            responses_text(responses),
            "",
            "![Fig. 7 style: std of layer responses](fig7.png)",
            "",
        ]
    grads = diagnostics.gradient_table(metrics) if len(metrics) else pd.DataFrame()
    finished = set(runs.loc[runs["status"] == "finished", "run"])
    without = sorted(finished - set(grads["run"])) if len(grads) else sorted(finished)
    if without:
        notes.append(
            "gradient norms skipped for runs that did not log them: " + ", ".join(without) + "."
        )
    if len(grads):
        spread = diagnostics.gradient_spread(grads)
        spread.to_csv(out_dir / "gradients.csv", index=False)
        plots.save(plots.gradient_profiles(grads), out_dir / "grad_profiles.png")
        plots.save(plots.gradient_ratios(spread), out_dir / "grad_ratios.png")
        written["grad_profiles"] = out_dir / "grad_profiles.png"
        written["grad_ratios"] = out_dir / "grad_ratios.png"
        lines += [
            "### Gradient norms",
            "",
            gradients_text(spread),
            "",
            "![Per-layer gradient norms](grad_profiles.png)",
            "",
            "![First/last layer gradient norm ratio](grad_ratios.png)",
            "",
        ]
    shortcuts = shortcut_table(runs)
    if shortcuts is not None:
        shortcuts.to_csv(out_dir / "shortcuts.csv", index=False)
        lines += [
            "### Shortcut options (Table 3 style)",
            "",
            shortcuts.to_markdown(index=False),
            "",
        ]
    return lines if len(lines) > 2 else []


def write_analysis(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    out_dir: str | Path,
    command: str = "",
    probe_dirs: Sequence[str | Path] = (),
) -> dict[str, Path]:
    """Write figures, tables and ``report.md`` (the claims ledger first) into ``out_dir``; probe
    outputs are looked for in ``out_dir`` and ``probe_dirs``. Return what was written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    notes: list[str] = []
    for name, maker in (("fig6", plots.fig6), ("fig1", plots.fig1)):
        if metrics.empty:
            notes.append(f"{name}.png skipped: no run has metrics yet.")
            continue
        try:
            fig = maker(metrics)
        except ValueError as err:
            notes.append(f"{name}.png skipped: {err}.")
            continue
        plots.save(fig, out_dir / f"{name}.png")
        written[name] = out_dir / f"{name}.png"

    table = results_table(runs)
    table.to_csv(out_dir / "table.csv", index=False)
    (out_dir / "table.md").write_text(table.to_markdown(index=False) + "\n")
    written["table"] = out_dir / "table.csv"

    found = verdicts(runs)
    probes = ledger.find_probes([*probe_dirs, out_dir])  # those named first
    claims = ledger.ledger(runs, metrics, probes)
    ledger.table(claims).to_csv(out_dir / "ledger.csv", index=False)
    written["ledger"] = out_dir / "ledger.csv"
    for figure in ledger.probe_figures([*probe_dirs, out_dir]):  # beside the report's links
        if figure.parent.resolve() != out_dir.resolve():
            shutil.copy(figure, out_dir / figure.name)
    status_counts = runs["status"].value_counts().to_dict()
    lines = ["# Degradation report", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    lines += [
        f"{len(runs)} runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(status_counts.items()))
        + ". Only finished runs enter the verdict and the error columns; the others are "
        "counted in the table's 'not finished' column and explained under Runs.",
        "",
        *ledger.section(claims),
        "## Verdict",
        "",
    ]
    if not found:
        lines += ["No finished runs, so no verdict.", ""]
    for verdict in found:
        if len(found) > 1:
            group = ", ".join(f"{k}={v}" for k, v in verdict.group.items())
            lines += [f"### {group}", ""]
        lines += [verdict_text(verdict), ""]
    lines += ["## Figures", ""]
    for name, caption in (
        ("fig6", "Fig. 6 style: plain (left) and residual (right) nets"),
        ("fig1", "Fig. 1 style: shallowest vs deepest plain net"),
    ):
        if name in written:
            lines += [f"![{caption}]({name}.png)", ""]
    lines += ["## Final errors (Table 6 style)", "", table.to_markdown(index=False), ""]
    speeds = convergence.table(runs, metrics)
    if len(speeds):
        speeds.to_csv(out_dir / "convergence.csv", index=False)
        written["convergence"] = out_dir / "convergence.csv"
    lines += convergence.section(runs, metrics)
    lines += diagnostics_section(runs, metrics, out_dir, written, notes)
    overview = runs_overview(runs)
    wall = pd.to_numeric(overview["wall time (s)"], errors="coerce")
    lines += [
        "## Runs",
        "",
        overview.to_markdown(index=False),
        "",
        f"Total training wall time: {wall.sum():.0f} s over {int(wall.notna().sum())} runs.",
        "",
        "## Definitions",
        "",
        "- Training error is measured on each training batch, in training mode, as training "
        "goes (the paper's dashed curves). The final training error is its mean over the last "
        "5% of the iterations; 'last 20%' is its mean over the last fifth.",
        "- Test error is measured on the whole test set after the last iteration.",
        f"- A difference of at most {100 * MARGIN:.0f} point counts as no change.",
        *[f"- Ledger: {d}" for d in ledger.DEFINITIONS],
        "",
    ]
    if notes:
        lines += ["## Skipped", "", *[f"- {n}" for n in notes], ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    written["report"] = report
    return written
