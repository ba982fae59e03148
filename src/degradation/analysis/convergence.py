"""Convergence speed and generalization gap, per net and across seeds.

- Speed: the iterations until the running mean (over 5% of the run) of the batch training error
  first reaches a threshold common to the sweep: 5 points above the highest final training error
  among its nets (so every net reaches it by its end).
- Generalization gap: final test error minus final training error.
"""

from __future__ import annotations

import pandas as pd

SPEED_WINDOW = 0.05  # running mean over this fraction of the run
THRESHOLD_ABOVE = 0.05  # threshold: this much above the highest final training error


def iterations_to(metrics: pd.DataFrame, run: str, threshold: float, max_steps: int) -> float:
    """Iterations until the run's running training error first reaches ``threshold`` (its
    ``max_steps`` if it never does)."""
    window = max(1, int(SPEED_WINDOW * max_steps))
    rows = metrics[(metrics["run"] == run) & metrics["train_error"].notna()].sort_values("step")
    curve = rows.set_index("step")["train_error"].rolling(window, min_periods=window).mean()
    hit = curve[curve <= threshold]
    return float(hit.index[0]) if len(hit) else float(max_steps)


def threshold(runs: pd.DataFrame) -> float:
    """The sweep's common speed threshold."""
    means = runs.groupby(["family", "depth"])["final_train_error"].mean()
    return float(means.max()) + THRESHOLD_ABOVE


def per_run(runs: pd.DataFrame, metrics: pd.DataFrame, level: float) -> pd.DataFrame:
    """Each finished run's iterations to ``level`` and its generalization gap."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    return done.assign(
        iterations_to=[
            iterations_to(metrics, r["run"], level, int(r["max_steps"])) for _, r in done.iterrows()
        ],
        gap=done["final_test_error"] - done["final_train_error"],
    )


def table(runs: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Per family and depth: seeds, iterations to the threshold and gap (mean, std); and the
    threshold."""
    done = runs[(runs["status"] == "finished") & runs["final_train_error"].notna()]
    if done.empty or metrics.empty:
        return pd.DataFrame(), float("nan")
    level = threshold(done)
    rows = per_run(done, metrics, level)
    stats = rows.groupby(["family", "depth"]).agg(
        seeds=("run", "size"),
        iterations_mean=("iterations_to", "mean"),
        iterations_std=("iterations_to", "std"),
        gap_mean=("gap", "mean"),
        gap_std=("gap", "std"),
    )
    return stats.reset_index(), level


def section(runs: pd.DataFrame, metrics: pd.DataFrame) -> list[str]:
    """Report lines: the per-net table (or why it is missing)."""
    stats, level = table(runs, metrics)
    lines = ["## Convergence and generalization, per net", ""]
    if stats.empty:
        return [*lines, "No finished runs with metrics.", ""]
    shown = pd.DataFrame({
        "net": stats["family"] + "-" + stats["depth"].astype(str),
        "seeds": stats["seeds"],
        f"iterations to {100 * level:.1f}%": [
            f"{m:.0f}" + ("" if pd.isna(s) else f" ± {s:.0f}")
            for m, s in zip(stats["iterations_mean"], stats["iterations_std"], strict=True)
        ],
        "test minus train error": [
            f"{100 * m:+.1f}" + ("" if pd.isna(s) else f" ± {100 * s:.1f}") + " points"
            for m, s in zip(stats["gap_mean"], stats["gap_std"], strict=True)
        ],
    })  # fmt: skip
    return [
        *lines,
        (__doc__ or "").split("\n\n", 1)[1].strip() + " Mean ± std over seeds.",
        "",
        shown.to_markdown(index=False),
        "",
    ]
