"""Convergence speed and generalization gap, per net and across seeds.

- Speed: the iterations until the running mean (over 5% of the run) of the batch training error
  first comes within 5 points of the run's own final training error: how soon a net gets close
  to where it ends, whatever level that is (a common threshold would favour the net that ends
  lower).
- Generalization gap: final test error minus final training error.
"""

from __future__ import annotations

import pandas as pd

from degradation.analysis.base import Context, Section
from degradation.analysis.select import comparable, comparable_metrics

TITLE = "Convergence and generalization, per net"
NEEDS = "finished runs with metrics"
SPEED_WINDOW = 0.05  # running mean over this fraction of the run
THRESHOLD_ABOVE = 0.05  # "close": within this much of the run's own final training error


def iterations_to(metrics: pd.DataFrame, run: str, threshold: float, max_steps: int) -> float:
    """Iterations until the run's running training error first reaches ``threshold`` (its
    ``max_steps`` if it never does)."""
    window = max(1, int(SPEED_WINDOW * max_steps))
    rows = metrics[(metrics["run"] == run) & metrics["train_error"].notna()].sort_values("step")
    curve = rows.set_index("step")["train_error"].rolling(window, min_periods=window).mean()
    hit = curve[curve <= threshold]
    return float(hit.index[0]) if len(hit) else float(max_steps)


def per_run(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each finished run's iterations to within 5 points of its final training error, and its
    generalization gap."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    return done.assign(
        iterations_to=[
            iterations_to(
                metrics, r["run"], r["final_train_error"] + THRESHOLD_ABOVE, int(r["max_steps"])
            )
            for _, r in done.iterrows()
        ],
        gap=done["final_test_error"] - done["final_train_error"],
    )


def table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per family and depth: seeds, iterations to within 5 points of the final training error
    and the gap (mean, std)."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    if done.empty or metrics.empty:
        return pd.DataFrame()
    rows = per_run(done, metrics)
    stats = rows.groupby(["family", "depth"]).agg(
        seeds=("run", "size"),
        iterations_mean=("iterations_to", "mean"),
        iterations_std=("iterations_to", "std"),
        gap_mean=("gap", "mean"),
        gap_std=("gap", "std"),
    )
    return stats.reset_index()


def section(ctx: Context) -> Section:
    """The per-net table (also convergence.csv)."""
    runs = comparable(ctx.runs)  # the paper's design where a sweep mixes designs
    stats = table(runs, comparable_metrics(ctx.runs, ctx.metrics))
    if stats.empty:
        return Section(TITLE, answered=False, skipped=[f"needs {NEEDS}"])
    ctx.save_table(stats, "convergence")
    shown = pd.DataFrame({
        "net": stats["family"] + "-" + stats["depth"].astype(str),
        "seeds": stats["seeds"],
        "iterations to within 5 points of its end": [
            f"{m:.0f}" + ("" if pd.isna(s) else f" ± {s:.0f}")
            for m, s in zip(stats["iterations_mean"], stats["iterations_std"], strict=True)
        ],
        "test minus train error": [
            f"{100 * m:+.1f}" + ("" if pd.isna(s) else f" ± {100 * s:.1f}") + " points"
            for m, s in zip(stats["gap_mean"], stats["gap_std"], strict=True)
        ],
    })  # fmt: skip
    return Section(
        TITLE,
        [
            (__doc__ or "").split("\n\n", 1)[1].strip()
            + " Mean ± std over seeds. Training error is measured on augmented batches in training "
            "mode, so the gap can be negative.",
            "",
            shown.to_markdown(index=False),
            "",
        ],
    )
