"""Read sweeps into tables: one row per run, and one row per run and logged step.

A run directory is any directory under a sweep that holds a ``summary.json`` or a Hydra
``.hydra/config.yaml``. Runs that finished, failed, were interrupted or are still incomplete are
all read; the ``status`` column says which.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from degradation import designs
from degradation.metrics_file import final_metrics, read_metrics_file
from degradation.rundirs import METRICS_FILE, SUMMARY_FILE, model_fields, read_summary, run_status

# Columns that describe what a run trained (its configuration), in table order.
# (``normalization``: model.norm for nets without BN, None for the paper's BN nets.)
# (``block``, ``unit``, ``shortcut_variant`` and its settings, ``init``: the 2016 design options of
# the CIFAR family; ``growth_rate``, ``compression``: DenseNet's. None where a net has no such
# option; runs made before these options existed have None, which means the 2015 design.)
DESIGN_COLUMNS = list(designs.COLUMNS)
CONFIG_COLUMNS = [
    "family",
    "depth",
    "width",
    "shortcut",
    "normalization",
    *DESIGN_COLUMNS,
    "data",
    "max_steps",
    "seed",
]
# Columns that identify a network setting across seeds.
SETTING_COLUMNS = [c for c in CONFIG_COLUMNS if c != "seed"]
# Mean training error over this last fraction of the iterations: "the last part of training".
LATE_WINDOW = 0.2


class NoRunsError(ValueError):
    """A directory given for analysis holds no runs."""


def find_run_dirs(sweep_dirs: Iterable[str | Path]) -> list[Path]:
    """Every run directory below the given directories (a run directory itself counts too)."""
    found: set[Path] = set()
    for sweep in sweep_dirs:
        sweep = Path(sweep)
        if not sweep.is_dir():
            raise NoRunsError(f"{sweep} is not a directory")
        for marker in (SUMMARY_FILE, ".hydra/config.yaml"):
            for path in sweep.rglob(marker):
                run_dir = path.parent if marker == SUMMARY_FILE else path.parent.parent
                if "checkpoints" not in run_dir.parts:
                    found.add(run_dir.resolve())
    return sorted(found)


def _config_fields(run_dir: Path) -> dict:
    """The table fields of a run from its resolved Hydra config (for runs without a summary)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        cfg = OmegaConf.load(path)
        if not isinstance(cfg, DictConfig):
            raise ValueError("not a mapping")
        model, data = cfg.get("model") or {}, cfg.get("data") or {}
    except Exception as err:  # noqa: BLE001 - a damaged YAML file fails in many ways
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        print(f"warning: {path} is unreadable ({reason}); its run's fields come from its "
              "summary alone", file=sys.stderr)  # fmt: skip
        return {}
    residual = bool(model.get("residual", False))
    fields = model_fields(OmegaConf.to_container(model) if model else {})
    target = str(data.get("_target_", ""))
    data_name = {
        "FashionMNISTDataModule": "fashion_mnist",
        "CIFAR10DataModule": "cifar10",
        "SyntheticDataModule": "synthetic",
    }.get(target.rsplit(".", 1)[-1], target)
    return {
        **fields,
        "depth": model.get("depth"),
        "width": model.get("width"),
        "shortcut": model.get("shortcut") if residual else None,
        "normalization": None if model.get("norm", "batch") == "batch" else model.get("norm"),
        "data": data_name,
        "max_steps": cfg.get("trainer", {}).get("max_steps"),
        "seed": cfg.get("seed"),
    }


def read_metrics(run_dir: str | Path) -> pd.DataFrame | None:
    """A run's ``metrics.csv`` (None if it has none), without its damaged rows: each damaged
    row is named in one line on stderr and dropped (:func:`read_metrics_file`)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    frame, problems = read_metrics_file(path)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return frame if "step" in frame else None


def late_train_error(metrics: pd.DataFrame, window: float = LATE_WINDOW) -> float:
    """Mean per-batch training error over the last ``window`` fraction of logged steps."""
    train = metrics.dropna(subset=["train_error"]) if "train_error" in metrics else metrics[:0]
    if not len(train):
        return math.nan
    return float(train["train_error"].tail(max(1, math.ceil(window * len(train)))).mean())


def read_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame | None]:
    """One run: a flat record (config, status, final numbers) and its metrics table."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir) or {}
    record = {"run": run_dir.name, "path": str(run_dir)}
    record.update(_config_fields(run_dir))
    record.update({k: v for k, v in summary.items() if v is not None or k not in record})
    status = summary.get("status")
    # "running" is told apart from "crashed" (its process died without a word) by the run's lock.
    record["status"] = run_status(run_dir, summary or None)
    metrics = read_metrics(run_dir)
    if metrics is not None and len(metrics):
        if status != "finished":
            record.update(final_metrics(metrics))
            trained = metrics.dropna(subset=["train_error"]) if "train_error" in metrics else None
            if trained is not None and len(trained):
                record["steps"] = int(trained["step"].iloc[-1]) + 1
        record["late_train_error"] = late_train_error(metrics)
    return record, metrics


def collect(*sweep_dirs: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All runs under the sweep directories: (runs table, metrics table).

    The runs table has one row per run; the metrics table one row per run and logged step, with
    the run's configuration fields as columns.
    """
    run_dirs = find_run_dirs(sweep_dirs)
    if not run_dirs:
        raise NoRunsError(
            "no runs found under "
            + ", ".join(str(s) for s in sweep_dirs)
            + " (a run directory holds summary.json or .hydra/config.yaml)"
        )
    records, frames = [], []
    for run_dir in run_dirs:
        record, metrics = read_run(run_dir)
        records.append(record)
        if metrics is not None and len(metrics):
            frames.append(metrics.assign(**{k: record.get(k) for k in ["run", *CONFIG_COLUMNS]}))
    runs = pd.DataFrame.from_records(records)
    for column in [*CONFIG_COLUMNS, "status", "steps", "final_train_error", "final_test_error"]:
        if column not in runs:
            runs[column] = None
    runs["net"] = runs["family"] + "-" + runs["depth"].astype(str)
    runs = runs.sort_values(["family", "depth", "seed", "run"], ignore_index=True)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(metrics):
        metrics["net"] = metrics["family"] + "-" + metrics["depth"].astype(str)
    return runs, metrics


def setting_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per network setting (family, depth, width, ...): mean and std over seeds of finished runs,
    and a ``not finished`` column naming the setting's other runs (e.g. ``1 diverged``)."""
    runs = runs.copy()
    keys = [c for c in SETTING_COLUMNS if c in runs and runs[c].notna().any()]
    runs[keys] = runs[keys].astype(object).fillna("-")
    done = runs[runs["status"] == "finished"]
    numbers = ["final_train_error", "late_train_error", "final_test_error"]
    for name in numbers:
        if name not in done:
            done = done.assign(**{name: math.nan})
    grouped = done.groupby(keys, sort=True, dropna=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{name}_{stat}" for name, stat in table.columns]
    every = runs.groupby(keys, sort=True, dropna=False)
    table = table.reindex(every.size().index)
    table.insert(0, "seeds", grouped.size().reindex(table.index).fillna(0).astype(int))
    params = every["params"].first() if "params" in runs else pd.Series(None, index=table.index)
    table.insert(1, "params", params)

    def others(statuses: pd.Series) -> str:
        counts = statuses[statuses != "finished"].value_counts()
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))

    table["not_finished"] = every["status"].agg(others)
    return table.reset_index()
