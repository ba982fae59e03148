"""Checkpoint and weight files: read only as weights (nothing in them can run code), written
atomically (a reader sees the old file or the new one, never half of one).

Run directories and ``results/`` are shared, so every such file is untrusted: it is read with
``torch.load(..., weights_only=True)``, and any failure (a pickled call the weights-only
unpickler refuses, a damaged or cut file) becomes one :class:`BadFile` line naming the file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from degradation.rundirs import LAST_CHECKPOINT, METRICS_FILE, PREVIOUS_CHECKPOINT

log = logging.getLogger("degradation.runs")


class BadFile(Exception):
    """A checkpoint or weights file that is refused (it holds more than weights) or unreadable
    (damaged, cut short, not a PyTorch file); the message is one line naming the file."""

    def __init__(self, path: str | Path, reason: str, unsafe: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.unsafe = Path(path), reason, unsafe


def _reason(err: BaseException) -> tuple[str, bool]:
    """One line on why ``torch.load`` failed, and whether the file was refused as unsafe."""
    text = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused is not None:
        return f"refused: it holds a pickled object ({refused.group(1)}), not only weights", True
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    if "Weights only load failed" in first:  # torch's preamble; the cause is further down
        first = next((line for line in lines if "Unsupported" in line), "not a PyTorch file")
    return f"unreadable ({type(err).__name__}: {first[:160]})", False


_reported: set[str] = set()


def report_skip(what: str, err: BadFile) -> None:
    """Say on stderr, once per process and file, that ``what`` is skipped because of ``err``."""
    if str(err.path) not in _reported:
        _reported.add(str(err.path))
        print(f"skipping {what}: {err}", file=sys.stderr)


def load_file(path: str | Path, mmap: bool = False) -> Any:
    """A checkpoint or weights file's content, read as weights only (tensors, numbers, strings,
    containers); raises :class:`BadFile` for anything else."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - a damaged or hostile file fails in many ways
        reason, unsafe = _reason(err)
        raise BadFile(path, reason, unsafe) from None


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint (``global_step`` and ``state_dict`` at least), read safely."""
    checkpoint = load_file(path, mmap=mmap)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise BadFile(path, "unreadable (not a Lightning checkpoint: no state_dict)")
    if not isinstance(checkpoint.get("global_step"), int):
        raise BadFile(path, "unreadable (not a Lightning checkpoint: no global_step)")
    return checkpoint


def net_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The net's weights from a checkpoint (``net.`` entries of its state dict) or from an
    exported weights file (a plain state dict)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        state = load_checkpoint(path)["state_dict"]
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    else:
        state = load_file(path)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BadFile(path, "unreadable (not a state dict of tensors)")
    return state


def temporary_beside(path: Path) -> Path:
    """A hidden temporary name in ``path``'s folder, for writing it atomically."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then move it over ``path``; on any failure (a full
    disk) the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_trainer_checkpoint(
    trainer: Any, path: str | Path, previous: str | Path | None = None
) -> None:
    """Lightning's full checkpoint (weights, optimizer, schedule, loops, data stream) written
    atomically to ``path``; the file that was there moves to ``previous`` if given. A failed
    write (a full disk) leaves both files as they were and no temporary file behind."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        trainer.save_checkpoint(tmp, weights_only=False)  # every process calls it; rank 0 writes
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if trainer.is_global_zero:
        if previous is not None and path.is_file():
            os.replace(path, previous)
        os.replace(tmp, path)


@dataclass
class ResumePoint:
    """Where a run continues: the checkpoint (None: from scratch), its step, and the run's
    record kept in it (started_at, attempts), which outlives a damaged summary."""

    path: Path | None = None
    step: int = 0
    record: dict[str, Any] = field(default_factory=dict)


def resume_point(
    folder: Path, move_bad: bool = True, logged: int | None = None, evaluated: set | None = None
) -> ResumePoint:
    """The checkpoint to resume from: ``last.ckpt``, or ``previous.ckpt`` when the last one is
    unreadable or reaches past the metrics; from scratch when there is none.

    A checkpoint is read as weights only; one that is refused (it holds a pickled object) or
    unreadable is reported in one line and, with ``move_bad``, renamed to ``<name>.corrupt`` so
    that it stands in the way of no later launch. With ``logged`` (the number of steps from 0
    whose metrics rows are intact) and ``evaluated`` (the steps with an intact evaluation row),
    a checkpoint at step ``s`` is used only if ``s <= logged`` and ``s`` was evaluated, so that
    no step's row is lost when the run continues.
    """
    bad = []
    for name in (LAST_CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = folder / name
        if not path.is_file():
            continue
        try:
            checkpoint = load_checkpoint(path, mmap=True)
        except BadFile as err:
            log.warning("checkpoint %s is %s", err.path, err.reason)
            if move_bad:
                os.replace(path, path.with_name(path.name + ".corrupt"))
            bad.append(name)
            continue
        step = int(checkpoint["global_step"])
        record = checkpoint.get("run_record")
        record = record if isinstance(record, dict) else {}
        if logged is not None and step > 0 and (step > logged or step not in (evaluated or ())):
            log.warning(
                "checkpoint %s (step %d) is ahead of the intact rows of %s (a training row for "
                "each of the first %d steps; evaluations at %s): not resuming from it",
                path, step, METRICS_FILE, logged, sorted(evaluated or ())[-3:] or "none",
            )  # fmt: skip
            bad.append(name)
            continue
        if bad:
            log.warning("resuming from the older checkpoint %s (step %d)", path, step)
        return ResumePoint(path, step, record)
    if bad:
        log.warning("no usable checkpoint in %s: training this run again from step 0", folder)
    return ResumePoint()
