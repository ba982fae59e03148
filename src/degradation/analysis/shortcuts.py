"""Which shortcut option? Plain nets against residual nets with shortcut options A (zero-padding
identity), B (projections where the shape changes) and C (projections everywhere) at each depth,
as in the paper's Table 3."""

from __future__ import annotations

import pandas as pd

from degradation.analysis.base import Context, Section
from degradation.analysis.final_errors import mean_std
from degradation.results import setting_table

TITLE = "Shortcut options (Table 3 style)"
NEEDS = "residual nets with two or more shortcut options (model=resnet, resnet_b, resnet_c)"


def shortcut_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Plain vs shortcut options A/B/C at each depth (None if fewer than two options)."""
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
                "train error (%)": mean_std(row, "final_train_error"),
                "test error (%)": mean_std(row, "final_test_error"),
            }
        )
    return pd.DataFrame(rows)


def section(ctx: Context) -> Section:
    """The table (also shortcuts.csv), or nothing when the sweep has one option."""
    table = shortcut_table(ctx.runs)
    if table is None:
        return Section(TITLE, answered=False, skipped=[f"needs {NEEDS}"])
    ctx.save_table(table, "shortcuts")
    return Section(TITLE, [table.to_markdown(index=False)])
