"""Do the nets train without normalization? Nets of the same depth with BN and without
(``model.norm=none``), residual ones also with the initializations proposed for that case
(Fixup, Zhang et al. 2019; SkipInit, De & Smith 2020) or zero-initialized last BN: their errors
over seeds and whether each trained, diverged or got stuck near chance."""

from __future__ import annotations

import pandas as pd

from degradation.analysis.base import Context, Section, table_section
from degradation.analysis.final_errors import design, mean_std
from degradation.analysis.select import is_2015_design
from degradation.analysis.shortcut_variants import diverged_seeds, outcome
from degradation.analysis.stats import difference, familywise
from degradation.results import setting_table

TITLE = "Normalization and initialization"
NEEDS = "nets with model.norm=none (and residual ones with model.init=fixup or skipinit)"
NORM_FREE_INITS = ("fixup", "skipinit")


def _norm(value) -> str:
    return "batch" if value is None or value == "-" or pd.isna(value) else str(value)


def norm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per family, depth, normalization and init: errors over seeds and the outcome."""
    if "normalization" not in runs or runs["normalization"].dropna().empty:
        return pd.DataFrame()
    table = setting_table(runs)
    if "init" not in table:
        table["init"] = "-"
    rows = []
    for _, row in table.sort_values(["depth", "family"]).iterrows():
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "design": design(row),
                "normalization": _norm(row.get("normalization")),
                "init": row["init"] if row["init"] != "-" else "default",
                "seeds": int(row["seeds"]),
                "train error (%)": mean_std(row, "final_train_error"),
                "test error (%)": mean_std(row, "final_test_error"),
                "outcome": outcome(row),
                "not finished": row.get("not_finished") or "",
            }
        )
    return pd.DataFrame(rows)


def norm_free_gaps(runs: pd.DataFrame) -> list[dict]:
    """Per norm-free init (Fixup, SkipInit) at the deepest depth that also has BN residual nets
    of the paper's design: its runs' final training error minus the BN nets' (``diff``, None
    without a finished run, with an interval ``ci`` at ``level``: 95% split over the inits,
    Bonferroni), the ``depth``, of its ``ended`` runs (finished or diverged) how many
    ``diverged`` and in how many distinct ``diverged_seeds``, and its finished ``runs``. Empty
    when the sweep has no such pair."""
    if "init" not in runs or "normalization" not in runs:
        return []
    res = runs[runs["family"] == "resnet"]
    free = res[(res["normalization"] == "none") & res["init"].isin(NORM_FREE_INITS)]
    bn = res[is_2015_design(res) & (res["status"] == "finished")]
    depths = sorted(set(free["depth"]) & set(bn["depth"]))
    if not depths:
        return []
    depth = depths[-1]
    base = bn[bn["depth"] == depth]["final_train_error"].to_numpy(float)
    out = []
    inits = list(free[free["depth"] == depth].groupby("init", sort=True))
    level = familywise(len(inits))  # claim 15 holds when any one init trains
    for init, at in inits:
        done = at[at["status"] == "finished"]
        diff, ci = (
            difference(done["final_train_error"].to_numpy(float), base, level=level)
            if len(done)
            else (None, None)
        )
        out.append(
            {
                "init": init,
                "diff": diff,
                "ci": ci,
                "level": level,
                "depth": int(depth),
                "ended": int(at["status"].isin(["finished", "diverged"]).sum()),
                "diverged": int((at["status"] == "diverged").sum()),
                "diverged_seeds": diverged_seeds(at),
                "runs": list(done["run"]),
            }
        )
    return out


def section(ctx: Context) -> Section:
    """The table (also normalization.csv)."""
    return table_section(
        ctx, TITLE, NEEDS, norm_table(ctx.runs), "normalization", "Mean ± std over seeds."
    )
