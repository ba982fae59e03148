"""Which runs compare: the finished runs of the paper's 2015 design where a sweep mixes designs,
and the columns that must agree for runs to enter one verdict. Every question and claim that
keeps to the paper's design takes its runs from here."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from degradation import designs
from degradation.results import CONFIG_COLUMNS

# The 2015 design: the verdict compares these nets where a sweep varies the design.
DESIGN_DEFAULTS = designs.PAPER_2015
# Columns that must agree for runs to be compared in one verdict.
GROUP_COLUMNS = ["data", "width", "max_steps"]


def with_defaults(runs: pd.DataFrame, columns: Iterable[str] = DESIGN_DEFAULTS) -> pd.Series:
    """Rows with BN and the 2015 default (:data:`DESIGN_DEFAULTS`) in each of ``columns``, the
    other design options free (None, in runs made before these options existed, counts as the
    default)."""
    mask = pd.Series(True, index=runs.index)
    if "normalization" in runs:
        mask &= runs["normalization"].isna()
    for column in columns:
        if column in runs:
            mask &= runs[column].isna() | (runs[column] == DESIGN_DEFAULTS[column])
    return mask


def is_2015_design(runs: pd.DataFrame) -> pd.Series:
    """Rows of the paper's design: BN, post-activation basic units, identity shortcuts, default
    init (None, in runs made before these options existed, counts as the default)."""
    return with_defaults(runs)


def one_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per net setting and seed (the same run copied into two analysed folders, or
    trained twice, is one seed, not two): a finished one where there is one, else the first by
    name."""
    keys = [c for c in CONFIG_COLUMNS if c in runs]
    if not keys or "status" not in runs:
        return runs
    order = runs.assign(_unfinished=runs["status"] != "finished").sort_values(
        ["_unfinished", "run"] if "run" in runs else ["_unfinished"], kind="stable"
    )
    kept = order.drop_duplicates(subset=keys).drop(columns="_unfinished")
    return runs.loc[runs.index.isin(kept.index)]


def comparable(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs the verdict compares, one per net setting and seed
    (:func:`one_per_seed`): where a sweep mixes designs, those of the paper's
    (:func:`is_2015_design`; a sweep of one other design is compared as it is), and option-A
    residual nets where several shortcut options are present."""
    runs = one_per_seed(runs)
    done = runs[runs["status"] == "finished"]
    paper = is_2015_design(done)
    if paper.any():
        done = done[paper]
    resnets = done[done["family"] == "resnet"]
    if "shortcut" in done and len(resnets) and (resnets["shortcut"] == "A").any():
        done = done[(done["family"] != "resnet") | (done["shortcut"] == "A")]
    return done


def left_out(runs: pd.DataFrame) -> list[str]:
    """Finished runs that :func:`comparable` leaves out of the verdict."""
    done = runs[runs["status"] == "finished"]
    return sorted(set(done["run"]) - set(comparable(runs)["run"]))


def metrics_of(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics of these runs."""
    return metrics[metrics["run"].isin(runs["run"])] if len(metrics) else metrics


def comparable_metrics(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics of the :func:`comparable` runs."""
    return metrics_of(comparable(runs), metrics)


def main_group(done: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The runs one verdict compares where a sweep holds several groups of
    :data:`GROUP_COLUMNS` (data, width, training length): the group with the longest training,
    then the most runs; and that group's settings (empty when the sweep holds one group)."""
    # a setting some nets lack (a dense net's width) does not split the sweep
    keys = [c for c in GROUP_COLUMNS if c in done and done[c].notna().all()]
    if done.empty or not keys:
        return done, {}
    groups = done.groupby(keys, dropna=False)
    if groups.ngroups < 2:
        return done, {}

    def settings(key) -> dict:
        return dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))

    def rank(key) -> tuple[float, int]:  # the longest training, then the most runs
        return float(settings(key).get("max_steps", 0)), len(groups.groups[key])

    best = max(groups.groups, key=rank)
    return done.loc[groups.groups[best]], settings(best)
