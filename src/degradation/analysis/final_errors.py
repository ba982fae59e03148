"""How do the final errors compare with the paper? Per net setting: training and test error over
seeds (mean ± std, and a 95% t interval of the mean with two or more seeds), parameters, and the
paper's number where the setting matches: Table 6 (CIFAR-10 ResNets, width 16, option A) or
Table 2 (ImageNet, 18 and 34 layers, width 64)."""

from __future__ import annotations

import pandas as pd

from degradation import designs, paper
from degradation.analysis.base import Context, Section
from degradation.analysis.stats import mean_interval
from degradation.results import setting_table

TITLE = "Final errors (Table 6 style)"
NEEDS = "runs with a final summary"


def paper_number(row: pd.Series) -> float | None:
    """The paper's test error (%) for this setting, where the paper reports it."""
    if row.get("normalization") not in (None, "-") and not pd.isna(row.get("normalization")):
        return None
    if design(row):  # the paper's tables are of its 2015 design
        return None
    if (
        row.get("data") == "cifar10"
        and row["family"] == "resnet"
        and row.get("width") == 16
        and row.get("shortcut") == "A"
    ):
        return paper.TABLE6_CIFAR_RESNET.get(int(row["depth"]))
    if row.get("data") == "imagenet" and row.get("width") == 64:
        return paper.TABLE2_IMAGENET.get((row["family"], int(row["depth"])))
    return None


def _int(value) -> int | None:
    return None if value is None or value == "-" or pd.isna(value) else int(value)


def design(row: pd.Series) -> str:
    """A setting's design options that differ from the 2015 defaults, in words ('' if none)."""
    parts = []
    for key, default in designs.PAPER_2015.items():
        value = row.get(key)
        if value not in (None, "-", default) and not pd.isna(value):
            parts.append(str(value))
    growth = row.get("growth_rate")
    if growth not in (None, "-") and not pd.isna(growth):
        parts.append(f"k={int(growth)}")
    return ", ".join(parts)


def mean_std(row: pd.Series, name: str) -> str:
    """``mean ± std`` (in %) of a setting-table column."""
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}")


def _interval(values: pd.Series) -> str:
    _, ci = mean_interval(values)
    return "" if ci is None else f"{100 * ci[0]:.2f} to {100 * ci[1]:.2f}"


def _setting_runs(runs: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    done = runs[runs["status"] == "finished"]
    for key in keys:
        column = done[key].astype(object).fillna("-")
        done = done[column == row[key]]
    return done


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final training and test error per setting (mean ± std and 95% interval over seeds),
    params, and the paper's test error where it applies."""
    table = setting_table(runs)
    keys = [c for c in table.columns if c in runs.columns and c != "params"]
    rows = []
    for _, row in table.iterrows():
        seeds = _setting_runs(runs, row, keys)
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "shortcut": row.get("shortcut", "-"),
                "width": _int(row.get("width")),
                "data": row.get("data"),
                "iterations": _int(row.get("max_steps")),
                "seeds": int(row["seeds"]),
                "params": int(row["params"]) if not pd.isna(row["params"]) else None,
                "train error (%)": mean_std(row, "final_train_error"),
                "train error, last 20% (%)": mean_std(row, "late_train_error"),
                "test error (%)": mean_std(row, "final_test_error"),
                "test error 95% interval (%)": _interval(seeds["final_test_error"]),
                "paper test error (%)": paper_number(row),
                "not finished": row.get("not_finished") or "",
            }
        )
    out = pd.DataFrame(rows)
    designs = [design(row) for _, row in table.iterrows()]
    if any(designs):
        out.insert(2, "design", designs)
    if "normalization" in table and (table["normalization"] != "-").any():
        out.insert(2, "normalization", table["normalization"].replace("-", "batch").to_numpy())
    return out


def section(ctx: Context) -> Section:
    """The table (also table.csv and table.md)."""
    table = results_table(ctx.runs)
    ctx.save_table(table, "table")
    (ctx.out_dir / "table.md").write_text(table.to_markdown(index=False) + "\n")
    out = Section(TITLE)
    out.lines += [
        "Mean ± std over seeds; the interval is the 95% t interval of the mean test error "
        "(two or more seeds).",
        "",
        table.to_markdown(index=False),
    ]
    if table["paper test error (%)"].isna().all():
        out.skipped.append(
            "paper comparison: no setting matches one the paper reports (CIFAR-10 option-A "
            "ResNets of width 16, or ImageNet 18/34 of width 64)"
        )
    return out
