"""Which part of the shortcut matters? Residual nets of one depth that differ only in what sits
on the shortcut of their shape-keeping blocks (He et al. 2016, Table 1): nothing (identity),
constant scaling, exclusive or shortcut-only gating, a 1x1 convolution, or dropout. Each setting
with its training and test error over seeds, its parameters, whether it trained, diverged or
got stuck near chance, and the paper's ResNet-110 number where the setting matches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from degradation.analysis.base import Context, Section, table_section
from degradation.analysis.final_errors import mean_std
from degradation.analysis.stats import MIN_SEEDS, difference, familywise
from degradation.data import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    SyntheticDataModule,
)
from degradation.designs import DEFAULTS, GATING
from degradation.paper import TABLE1_2016
from degradation.results import setting_table

TITLE = "Shortcut variants (He et al. 2016, Table 1 style)"
NEEDS = "residual nets of one depth with two or more shortcut variants (shortcut_ablation_quick)"
# Stuck: a finished run whose final training error is within this of chance (1 - 1/classes).
STUCK_MARGIN = 0.05


def setting_label(row: pd.Series) -> str | None:
    """A variant's setting in words (None for variants without one)."""
    variant = row.get("shortcut_variant")

    def value(key, default):
        v = row.get(key)
        missing = v is None or v == "-" or (isinstance(v, float) and math.isnan(v))
        return default if missing else v

    if variant == "scaling":
        both = str(value("scale_branch", DEFAULTS["scale_branch"])).lower() in ("true", "1", "1.0")
        scale = float(value("shortcut_scale", DEFAULTS["shortcut_scale"]))
        return f"{scale:g}, {'both branches' if both else 'shortcut only'}"
    if variant in GATING:
        return f"bias {float(value('gate_bias', DEFAULTS['gate_bias'])):g}"
    if variant == "dropout":
        return f"{float(value('shortcut_dropout', DEFAULTS['shortcut_dropout'])):g}"
    return None


def class_count(data: object) -> int | None:
    """How many classes the data set named ``data`` (a run's ``data`` column) has, as its data
    module says (a synthetic set: its default); None where only its files tell (an image
    folder) or the name is not a data module's."""
    modules = (
        CIFAR10DataModule,
        FashionMNISTDataModule,
        SyntheticDataModule,
        ImageFolderDataModule,
    )
    found = next((m for m in modules if m.name == data), None)
    return getattr(found, "num_classes", None) or None


def outcome(row: pd.Series) -> str:
    """A setting's outcome from its setting-table row: diverged, stuck near chance (where its
    data set's class count is known), or trains."""
    statuses = str(row.get("not_finished") or "")
    if "diverged" in statuses:
        return "diverged"
    final = row.get("final_train_error_mean")
    if final is None or pd.isna(final):
        return "no finished run"
    classes = class_count(row.get("data"))
    if classes and final >= 1 - 1 / classes - STUCK_MARGIN:
        return "stuck near chance"
    return "trains"


def paper_table1() -> dict[tuple[str, str | None], str]:
    """The 2016 paper's Table 1 (ResNet-110, CIFAR-10, test error %; "fails" where the paper
    reports that the net failed to train; :data:`degradation.paper.TABLE1_2016`), keyed
    by variant and its setting in words (:func:`setting_label`)."""
    return {
        (options["shortcut_variant"], setting_label(pd.Series(options))): (
            "fails" if error is None else f"{error:.2f}"
        )
        for options, error in TABLE1_2016.values()
    }


def variants(runs: pd.DataFrame) -> pd.DataFrame:
    """The setting table of residual nets (plus plain nets of the same depths) where two or more
    shortcut variants share a depth, data, width and length; empty otherwise."""
    if "shortcut_variant" not in runs or runs["shortcut_variant"].dropna().nunique() < 2:
        return pd.DataFrame()
    table = setting_table(runs)
    keys = [c for c in ("depth", "data", "width", "max_steps") if c in table]
    keep = []
    for _, group in table.groupby(keys, sort=True):
        res = group[group["family"] == "resnet"]
        if res["shortcut_variant"][res["shortcut_variant"] != "-"].nunique() >= 2:
            keep.append(group[group["family"].isin(["plain", "resnet"])])
    return pd.concat(keep, ignore_index=True) if keep else pd.DataFrame()


def variant_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 1 style: variant, setting, seeds, params, errors, outcome, the paper's number."""
    table = variants(runs)
    rows = []
    for _, row in table.iterrows():
        residual = row["family"] == "resnet"
        variant = row.get("shortcut_variant") if residual else "none (plain net)"
        setting = setting_label(row) if residual else None
        paper = None
        if residual and row.get("data") == "cifar10" and int(row["depth"]) == 110:
            paper = paper_table1().get((variant, setting))
        rows.append(
            {
                "net": f"{row['family']}-{int(row['depth'])}",
                "shortcut": variant,
                "setting": setting or "",
                "seeds": int(row["seeds"]),
                "params": int(row["params"]) if not pd.isna(row["params"]) else None,
                "train error (%)": mean_std(row, "final_train_error"),
                "test error (%)": mean_std(row, "final_test_error"),
                "outcome": outcome(row),
                "paper, ResNet-110 CIFAR-10 (%)": paper or "",
                "not finished": row.get("not_finished") or "",
            }
        )
    return pd.DataFrame(rows)


def diverged_seeds(runs: pd.DataFrame) -> int:
    """How many distinct seeds the diverged runs among ``runs`` (one net's) have."""
    diverged = runs[runs["status"] == "diverged"]
    return int(diverged["seed"].nunique()) if "seed" in diverged else 0


def diverged_text(diverged: int, ended: int, seeds: int) -> str:
    """``k of n runs diverged`` (with the distinct seeds where fewer than the runs), "" when
    none did."""
    if not diverged:
        return ""
    text = f"{diverged} of {ended} runs diverged"
    return text + (f" ({seeds} distinct seeds)" if seeds != diverged else "")


@dataclass(frozen=True)
class Lead:
    """One shortcut variant setting against the identity shortcut (:func:`identity_lead`):
    ``diff`` its finished runs' mean final training error minus identity's (NaN without a
    finished run) with its interval ``ci`` at ``level``, and of its ``ended`` runs (finished
    or diverged) how many ``diverged`` and in how many distinct ``diverged_seed_count``."""

    name: str
    diff: float
    ci: tuple[float, float] | None
    level: float
    ended: int
    diverged: int
    diverged_seed_count: int

    @property
    def finished(self) -> bool:
        """Whether it has a finished run (a difference)."""
        return not math.isnan(self.diff)

    @property
    def diverges(self) -> bool:
        """Whether its divergence decides: diverged in at least ``MIN_SEEDS`` distinct seeds."""
        return self.diverged_seed_count >= MIN_SEEDS

    @property
    def divergence(self) -> str:
        """``k of n runs diverged`` ("" when none did)."""
        return diverged_text(self.diverged, self.ended, self.diverged_seed_count)


def identity_lead(runs: pd.DataFrame) -> list[Lead]:
    """One :class:`Lead` per other variant setting at the deepest ablated depth: its final
    training error minus the identity shortcut's (positive: identity trains better), with its
    interval: 95% split over the settings (Bonferroni; each one can decide claim 12), and its
    diverged runs and their distinct seeds."""
    ended = runs[runs["status"].isin(["finished", "diverged"]) & (runs["family"] == "resnet")]
    if "shortcut_variant" not in ended or ended["shortcut_variant"].dropna().nunique() < 2:
        return []
    depths = [d for d, g in ended.groupby("depth") if g["shortcut_variant"].nunique() >= 2]
    if not depths:
        return []
    at = ended[ended["depth"] == max(depths)]
    done = at[at["status"] == "finished"]
    identity = done[done["shortcut_variant"] == "identity"]["final_train_error"].to_numpy(float)
    if not len(identity):
        return []
    groups = [group for _, group in at[at["shortcut_variant"] != "identity"].groupby(
        ["shortcut_variant", *[c for c in ("shortcut_scale", "scale_branch", "gate_bias",
                                           "shortcut_dropout") if c in at]],
        dropna=False,
    )]  # fmt: skip
    level = familywise(len(groups))  # the row decides when any one setting does
    out = []
    for group in groups:
        label = group["shortcut_variant"].iloc[0]
        setting = setting_label(group.iloc[0])
        finished = group[group["status"] == "finished"]["final_train_error"].to_numpy(float)
        diff, ci = (
            difference(finished, identity, level=level) if len(finished) else (math.nan, None)
        )
        out.append(
            Lead(
                name=f"{label} ({setting})" if setting else label,
                diff=diff,
                ci=ci,
                level=level,
                ended=len(group),
                diverged=int((group["status"] == "diverged").sum()),
                diverged_seed_count=diverged_seeds(group),
            )
        )
    return out


def section(ctx: Context) -> Section:
    """The table (also shortcut_variants.csv)."""
    intro = (
        "Residual nets that differ only in what sits on the shortcut of their shape-keeping "
        "blocks, with plain nets of the same depth for reference. Mean ± std over seeds; "
        f"stuck: a final training error within {100 * STUCK_MARGIN:.0f} points of chance."
    )
    return table_section(ctx, TITLE, NEEDS, variant_table(ctx.runs), "shortcut_variants", intro)
