"""The training error measured as the test error is: in eval mode (BN with its running
statistics), without augmentation, on a fixed subset of the training images, from each finished
run's final weights. The batch training error of the curves is measured in training mode on
augmented batches, so test minus *that* error can be negative; test minus this one is the
generalization gap (claim 7).

Computed once per run and kept in the run's ``train_eval.csv``, so the number stays with the run
when its checkpoints are not kept (as ``responses.csv`` does for Fig. 7)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from degradation.analysis.base import keep_cache, read_cached_column
from degradation.analysis.trained import load_run
from degradation.checkpoints import BadFile, report_skip
from degradation.data import DataUnavailableError

TRAIN_EVAL_FILE = "train_eval.csv"
# The fixed subset: the first this many images of the run's training set (after any validation
# split or train_size), the same for every run of a data set.
TRAIN_EVAL_IMAGES = 5000
BATCH = 500


@torch.no_grad()
def eval_mode_error(net: torch.nn.Module, datamodule, images: int = TRAIN_EVAL_IMAGES) -> float:
    """Top-1 error of ``net`` in eval mode on the first ``images`` training images, preprocessed
    as test images (mean image subtracted, no crop or flip)."""
    datamodule.setup("fit")
    x, y = datamodule.train_set.tensors
    x, y = x[:images], y[:images]
    net.eval()
    wrong = 0
    for i in range(0, len(x), BATCH):
        logits = net(datamodule.preprocess(x[i : i + BATCH], train=False))
        wrong += int((logits.argmax(dim=1) != y[i : i + BATCH]).sum())
    return wrong / len(x)


def run_train_eval(run_dir: str | Path, images: int = TRAIN_EVAL_IMAGES) -> float:
    """A finished run's eval-mode training-subset error (cached in ``train_eval.csv``)."""
    run_dir = Path(run_dir)
    cached = read_cached_column(run_dir / TRAIN_EVAL_FILE, "error")
    if cached is not None:
        return float(cached.iloc[0])
    try:
        net, datamodule = load_run(run_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} and no {TRAIN_EVAL_FILE}") from None
    if not hasattr(datamodule, "preprocess"):
        raise TypeError(f"{run_dir.name}: an image-folder data set (not held in memory)")
    error = eval_mode_error(net, datamodule, images)
    count = min(images, len(datamodule.train_set))
    keep_cache(pd.DataFrame({"images": [count], "error": [error]}), run_dir / TRAIN_EVAL_FILE)
    return error


def table(runs: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """Per finished run (indexed by run name): its eval-mode training-subset error; and notes on
    the runs without one (no weights, damaged files)."""
    values, skipped = {}, []
    for _, run in runs[runs["status"] == "finished"].iterrows():
        try:
            values[run["run"]] = run_train_eval(run["path"])
        except BadFile as err:
            report_skip(run["run"], err)
            skipped.append(f"{run['run']}: {err}")
        except (FileNotFoundError, DataUnavailableError, TypeError) as err:
            skipped.append(str(err))
        except Exception as err:  # noqa: BLE001 - one run's damage must not stop the others
            note = f"{run['run']}: {type(err).__name__}: {err}"
            print(f"skipping {note}", file=sys.stderr)
            skipped.append(note)
    return pd.Series(values, dtype=float), skipped
