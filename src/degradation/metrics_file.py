"""A run's ``metrics.csv``, read as the untrusted file it is: rows that are whole are kept, and
each damaged row (cut short, with fields missing or extra, not a number, a step out of order)
is dropped and named in one line. No torch here.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

# How many damaged rows a report names one by one before it counts the rest.
LISTED = 3


def _step_of(line: str) -> str:
    return line.split(",", 1)[0][:20] or "?"


def read_metrics_file(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The whole rows of a metrics file, sorted by step, and a line per problem found (see
    :func:`_read`); whatever else goes wrong reading it is one problem too, never an error."""
    try:
        return _read(Path(path))
    except Exception as err:  # noqa: BLE001 - a hostile file must not stop the caller
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        return pd.DataFrame(), [f"{path}: unreadable ({type(err).__name__}: {reason})"]


def _read(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The whole rows of a metrics file, sorted by step, and a line per problem found.

    A file that does not end in a newline was cut short: its last row is dropped even when its
    fields still parse (``0.25`` cut to ``0.2``). A file without a ``step`` column, or that cannot
    be read at all, gives an empty table and one problem.
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        return pd.DataFrame(), [f"{path}: unreadable ({err.strerror or err})"]
    lines = text.split("\n")
    cut = not text.endswith("\n")
    if not cut:
        lines = lines[:-1]
    if not lines or not lines[0].strip():
        return pd.DataFrame(), [f"{path}: empty"]
    header = lines[0].split(",")
    if "step" not in header:
        return pd.DataFrame(), [f"{path}: no 'step' column (a damaged header: {lines[0][:80]!r})"]
    damaged: list[tuple[int, str]] = []  # (line number, what is wrong)
    kept, numbers_of = [lines[0]], []  # the whole lines, and their line numbers in the file
    for number, line in enumerate(lines[1:], start=2):
        if cut and number == len(lines):
            damaged.append((number, f"line {number} (step {_step_of(line)}) cut short"))
        elif line.count(",") != len(header) - 1:
            fields = f"has {line.count(',') + 1} fields, not {len(header)}"
            damaged.append((number, f"line {number} (step {_step_of(line)}) {fields}"))
        else:
            kept.append(line)
            numbers_of.append(number)
    try:  # quotes are not part of this format: a stray one is damage, not a quoted field
        frame = pd.read_csv(io.StringIO("\n".join(kept) + "\n"), dtype=str,
                            keep_default_na=False, quoting=csv.QUOTE_NONE)  # fmt: skip
    except (ValueError, pd.errors.ParserError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        return pd.DataFrame(), [f"{path}: unreadable ({reason})"]
    numbers = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    not_numbers = (numbers.isna() & (frame != "")).any(axis=1)
    step = numbers["step"]
    whole = step.notna() & (step >= 0) & (step == step.round())
    bad = not_numbers | ~whole
    for index in frame.index[bad]:
        number = numbers_of[index]
        damaged.append(
            (number, f"line {number} (step {frame.at[index, 'step'][:20]}) is not numbers")
        )
    numbers = numbers[~bad]
    # a step logged twice or out of order: keep the first occurrence, in file order
    order = numbers["step"].cummax().shift(fill_value=-math.inf)
    repeated = numbers["step"] <= order
    for index in numbers.index[repeated]:
        number = numbers_of[index]
        damaged.append(
            (number, f"line {number} (step {int(numbers.at[index, 'step'])}) out of order")
        )
    numbers = numbers[~repeated].reset_index(drop=True)
    numbers["step"] = numbers["step"].astype(int)
    problems = []
    if damaged:
        listed = "; ".join(text for _, text in sorted(damaged)[:LISTED])
        more = f"; and {len(damaged) - LISTED} more" if len(damaged) > LISTED else ""
        problems.append(f"{path}: {listed}{more}: dropped")
    return numbers, problems


def logged_through(metrics: pd.DataFrame) -> int:
    """How many steps from step 0 on have their training row: the first step missing one."""
    if "train_error" not in metrics or not len(metrics):
        return 0
    steps = set(metrics.loc[metrics["train_error"].notna(), "step"].astype(int))
    n = 0
    while n in steps:
        n += 1
    return n


# Final training error/loss: mean of the per-batch values over this last fraction of the steps.
FINAL_TRAIN_WINDOW = 0.05


def final_metrics(metrics: pd.DataFrame, window: float = FINAL_TRAIN_WINDOW) -> dict[str, float]:
    """Final numbers of a run from its metrics table.

    Training error and loss are the mean of the per-batch values over the last ``window``
    fraction of the logged training steps; test (and val) numbers are those of the last
    evaluation.
    """
    out: dict[str, float] = {}
    train = metrics.dropna(subset=["train_error"]) if "train_error" in metrics else metrics[:0]
    if len(train):
        last = train.tail(max(1, math.ceil(window * len(train))))
        out["final_train_error"] = float(last["train_error"].mean())
        out["final_train_loss"] = float(last["train_loss"].mean())
    for name in ("test_error", "test_loss", "val_error", "val_loss"):
        if name in metrics:
            values = metrics.dropna(subset=[name])
            if len(values):
                out[f"final_{name}"] = float(values[name].iloc[-1])
                if name == "test_error":
                    out["final_eval_step"] = int(values["step"].iloc[-1])
    return out
