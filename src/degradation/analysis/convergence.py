"""Convergence speed and generalization gap, per net and across seeds.

- Speed: the early training error, the mean of the running batch training error (over 5% of the
  run) at fixed fractions of the iterations before the first learning-rate drop. Before the drop
  the schedule has not yet flattened any curve, and a net stuck near chance scores badly rather
  than "converging" at once to where it stays.
- Generalization gap: final test error minus the training error measured the same way (eval
  mode, no augmentation, on a fixed subset of the training images, from the final weights:
  ``train_eval``), where the run's weights or its ``train_eval.csv`` are there; beside it, test
  minus the final batch training error of the curves (training mode, augmented batches), which
  can be negative.
"""

from __future__ import annotations

import pandas as pd

from degradation.analysis import train_eval
from degradation.analysis.base import Context, Section
from degradation.analysis.select import comparable, comparable_metrics

TITLE = "Convergence and generalization, per net"
NEEDS = "finished runs with metrics"
SPEED_WINDOW = 0.05  # running mean over this fraction of the run
# Where the early training error is read: these fractions of the steps before the first drop.
EARLY_FRACTIONS = (0.25, 0.5, 0.75)
# A net that ends at or above this training error is stuck: its speed is not compared.
STUCK_ERROR = 0.5


def first_drop(rows: pd.DataFrame, max_steps: int) -> int:
    """The first step at which the logged learning rate falls below its highest value so far
    (after any warm-up); ``max_steps`` when it never does or was not logged."""
    if "lr" not in rows:
        return max_steps
    lr = rows.dropna(subset=["lr"]).sort_values("step")
    fell = lr[lr["lr"] < 0.999 * lr["lr"].cummax()]
    return int(fell["step"].iloc[0]) if len(fell) else max_steps


def early_error(metrics: pd.DataFrame, run: str, max_steps: int) -> float:
    """The run's running training error at :data:`EARLY_FRACTIONS` of the steps before its
    first learning-rate drop, averaged (NaN without enough logged steps)."""
    rows = metrics[(metrics["run"] == run) & metrics["train_error"].notna()].sort_values("step")
    if rows.empty:
        return float("nan")
    drop = first_drop(rows, max_steps)
    window = max(1, int(SPEED_WINDOW * max_steps))
    curve = rows.set_index("step")["train_error"].rolling(window, min_periods=1).mean()
    values = [curve[curve.index <= f * drop] for f in EARLY_FRACTIONS]
    return (
        float(sum(v.iloc[-1] for v in values) / len(values))
        if all(len(v) for v in values)
        else float("nan")
    )


def per_run(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each finished run's early training error and its generalization gap."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    return done.assign(
        early_error=[
            early_error(metrics, r["run"], int(r["max_steps"])) for _, r in done.iterrows()
        ],
        gap=done["final_test_error"] - done["final_train_error"],
    )


def table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per family and depth: seeds, early training error and the gap (mean, std)."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    if done.empty or metrics.empty:
        return pd.DataFrame()
    rows = per_run(done, metrics)
    measured, _ = train_eval.table(done)
    rows["eval_gap"] = rows["final_test_error"] - rows["run"].map(measured)
    stats = rows.groupby(["family", "depth"]).agg(
        seeds=("run", "size"),
        early_mean=("early_error", "mean"),
        early_std=("early_error", "std"),
        eval_gap_seeds=("eval_gap", "count"),
        eval_gap_mean=("eval_gap", "mean"),
        eval_gap_std=("eval_gap", "std"),
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
        "early training error (before the first lr drop)": [
            f"{100 * m:.1f}%" + ("" if pd.isna(s) else f" ± {100 * s:.1f}")
            for m, s in zip(stats["early_mean"], stats["early_std"], strict=True)
        ],
        "test minus eval-mode training error": [
            _points(m, s, n, seeds)
            for m, s, n, seeds in zip(
                stats["eval_gap_mean"], stats["eval_gap_std"], stats["eval_gap_seeds"],
                stats["seeds"], strict=True,
            )
        ],
        "test minus batch training error": [
            _points(m, s) for m, s in zip(stats["gap_mean"], stats["gap_std"], strict=True)
        ],
    })  # fmt: skip
    return Section(
        TITLE,
        [
            (__doc__ or "").split("\n\n", 1)[1].strip()
            + f" Mean ± std over seeds; the eval-mode training error is on the first "
            f"{train_eval.TRAIN_EVAL_IMAGES} training images ('-' where a run has neither weights "
            "nor train_eval.csv).",
            "",
            shown.to_markdown(index=False),
            "",
        ],
    )


def _points(mean: float, std: float, count: int | None = None, seeds: int | None = None) -> str:
    """A gap in points, mean ± std, and how many seeds it has where not all."""
    if pd.isna(mean):
        return "-"
    text = f"{100 * mean:+.1f}" + ("" if pd.isna(std) else f" ± {100 * std:.1f}") + " points"
    return text + (f" ({count} of {seeds} seeds)" if count is not None and count < seeds else "")
