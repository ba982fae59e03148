"""One run's directory: its metrics file, its summary, and the training that fills them.

A run directory holds
- ``config.yaml``: the resolved configuration (``.hydra/`` keeps Hydra's own record);
- ``metrics.csv``: one row per logged step (``step``, ``train_error``, ``train_loss``, ``lr``,
  ``test_error``, ...);
- ``checkpoints/``: ``last.ckpt`` (after every evaluation, written atomically) and
  ``final.ckpt``;
- ``summary.json``: what was trained, its status (running, finished, diverged, failed,
  interrupted), its final numbers, wall time and provenance (code version, packages, device).

Training again into a directory whose summary says ``finished`` or ``diverged`` does nothing; a
run that was stopped resumes from ``last.ckpt`` and its ``metrics.csv`` continues where the
checkpoint left it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from degradation.checkpoints import resume_point, save_trainer_checkpoint
from degradation.checks import check_config
from degradation.config import apply_budget
from degradation.launch import is_rank_zero, provenance
from degradation.metrics_file import final_metrics, logged_through
from degradation.metrics_logger import MetricsLogger
from degradation.models import count_parameters
from degradation.module import DegradationModule, Diverged
from degradation.rundirs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DONE,
    FINAL_CHECKPOINT,
    LOG_FILE,
    LOG_FORMAT,
    RunLock,
    model_fields,
    read_summary,
    write_atomic,
    write_summary,
)
from degradation.speed import apply_speed_settings, device_name

__all__ = ["MetricsLogger", "Setup", "build", "quiet_lightning", "train"]

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Setup:
    """Everything one training is made of, built from its configuration."""

    datamodule: L.LightningDataModule
    net: torch.nn.Module
    module: DegradationModule
    trainer: L.Trainer
    metrics_logger: MetricsLogger


def build(cfg: DictConfig, run_dir: str | Path, extra_callbacks: Sequence[Any] = ()) -> Setup:
    """Instantiate data, net, LightningModule and Trainer from a (checked) configuration."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    net = instantiate(
        cfg.model, in_channels=datamodule.in_channels, num_classes=datamodule.num_classes
    )
    speed = cfg.get("speed") or {}
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = DegradationModule(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        channels_last=bool(speed.get("channels_last", False)),
        compile=bool(speed.get("compile", False)),
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    metrics_logger = next((lg for lg in loggers if isinstance(lg, MetricsLogger)), None)
    if metrics_logger is None:
        metrics_logger = MetricsLogger(run_dir)
        loggers.insert(0, metrics_logger)
    trainer = instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers)
    return Setup(datamodule, net, module, trainer, metrics_logger)


def train(
    cfg: DictConfig, run_dir: str | Path, record: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Train the configured net into ``run_dir`` and return its summary.

    A run that is already done (finished or diverged) is returned as it is; one that was stopped
    resumes from its last checkpoint. A loss that stops being finite ends the run with status
    ``diverged``; any other error is recorded as ``failed`` and raised again. Nothing is written
    into ``run_dir`` before the settings are checked and this process holds the run's lock:
    then ``record`` (file name -> text, e.g. Hydra's ``.hydra/*.yaml``) is written and the log
    goes to ``train.log`` too, so a refused second launch leaves the running run's files as
    they are.
    """
    run_dir = Path(run_dir)
    previous = read_summary(run_dir) or {}
    if previous.get("status") in DONE:
        return previous
    apply_budget(cfg)
    check_config(cfg)
    apply_speed_settings(cfg)
    if not is_rank_zero():  # a further process of a multi-process run: rank 0 keeps the books
        return _train(cfg, run_dir, previous, rank_zero=False)
    with RunLock(run_dir):
        previous = read_summary(run_dir) or {}  # as it is now that this process holds the run
        if previous.get("status") in DONE:
            return previous
        for stale in [*run_dir.glob(".*.tmp"), *(run_dir / CHECKPOINT_DIR).glob(".*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a write that died with its process
        for name, text in (record or {}).items():
            write_atomic(run_dir / name, text)
        with log_to_file(run_dir / LOG_FILE):
            return _train(cfg, run_dir, previous, rank_zero=True)


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Send this process's log records to ``path`` (appended) as well, while in the block."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _train(cfg: DictConfig, run_dir: Path, previous: dict, rank_zero: bool) -> dict[str, Any]:
    kept = MetricsLogger(run_dir).read()
    evaluated = set(kept.loc[kept["test_error"].notna(), "step"]) if "test_error" in kept else set()
    start = resume_point(
        run_dir / CHECKPOINT_DIR, move_bad=rank_zero, logged=logged_through(kept),
        evaluated=evaluated,
    )  # fmt: skip
    if rank_zero:
        # Hydra keeps .hydra/config.yaml with its interpolations; this copy is fully resolved,
        # so the run can be rebuilt (e.g. from its checkpoint) without Hydra.
        write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    setup = build(cfg, run_dir)
    datamodule, net, module = setup.datamodule, setup.net, setup.module
    trainer, metrics_logger = setup.trainer, setup.metrics_logger
    resume_from, resumed_step = start.path, start.step
    if resume_from is not None:
        metrics_logger.resume(resumed_step, kept)
        log.info("resuming %s from step %d (%s)", run_dir.name, resumed_step, resume_from)
    # What an unreadable summary.json lost, the checkpoint kept (either may be junk).
    kept_record = previous or start.record
    started_at = kept_record.get("started_at")
    attempts = kept_record.get("attempts")
    started_at = started_at if isinstance(started_at, str) else None
    attempts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    residual = bool(getattr(net, "residual", False))
    fields = model_fields(cfg.model)  # family ("plain", "resnet", "dense") and design options
    summary: dict[str, Any] = {
        "run": run_dir.name,
        "model": f"{fields['family']}-{cfg.model.depth}",
        **fields,
        "depth": int(cfg.model.depth),
        "width": int(cfg.model.get("width", 0)) or None,
        "shortcut": getattr(net, "shortcut", None) if residual else None,
        "stem": cfg.model.get("stem"),
        "normalization": None if cfg.model.get("norm", "batch") == "batch" else cfg.model.norm,
        "data": datamodule.name,
        "seed": int(cfg.seed),
        "params": count_parameters(net),
        "max_steps": int(cfg.trainer.max_steps),
        "batch_size": int(datamodule.batch_size),
        # what runs, as Lightning settled it (16 on a CPU trains in bf16-mixed)
        "precision": str(trainer.precision),
        "status": "running",
        "started_at": started_at or _now(),
        "attempts": max(attempts, 0) + 1,
        "resumed_from_step": resumed_step or None,
        "pid": os.getpid(),
        "provenance": provenance(device_name(trainer.strategy.root_device)),
    }
    module.run_record = {"started_at": summary["started_at"], "attempts": summary["attempts"]}
    save = functools.partial(write_summary, run_dir) if rank_zero else (lambda _: None)
    save(summary)
    try:
        _fit(setup, resume_from, run_dir)
    except Diverged as err:
        metrics_logger.flush()
        summary.update(
            status="diverged",
            diverged_at_step=err.step,
            error=str(err),
            steps=err.step,
            wall_time_s=round(module.wall_time(), 2),
            finished_at=_now(),
            **final_metrics(metrics_logger.frame()),
        )
        save(summary)
        log.warning("%s diverged: %s", run_dir.name, err)
        return summary
    except BaseException as err:
        summary.update(
            status="interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
            error=f"{type(err).__name__}: {err}",
            steps=int(trainer.global_step),
            wall_time_s=round(module.wall_time(), 2),
            finished_at=_now(),
        )
        metrics_logger.flush()
        save(summary)
        raise
    wall = module.wall_time()
    summary.update(
        status="finished",
        steps=int(trainer.global_step),
        wall_time_s=round(wall, 2),
        eval_time_s=round(module.eval_time(), 2),
        iterations_per_s=round((trainer.global_step - resumed_step) / module.session_time(), 3),
        finished_at=_now(),
        **final_metrics(metrics_logger.frame()),
    )
    save(summary)
    return summary


def _fit(setup: Setup, resume_from: Path | None, run_dir: Path) -> None:
    """Fit, evaluate at the end if the last step was not, and save the final checkpoint; every
    process of a multi-process run makes the same calls."""
    trainer, module, datamodule = setup.trainer, setup.module, setup.datamodule
    # weights_only: the checkpoint is read as data (resume_point has read it so already)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    evaluated = "test_error" in setup.metrics_logger.rows.get(trainer.global_step, {})
    if not trainer.strategy.broadcast(evaluated, src=0):  # rank 0's rows decide for all
        trainer.validate(module, datamodule=datamodule, verbose=False)
    save_trainer_checkpoint(trainer, run_dir / CHECKPOINT_DIR / FINAL_CHECKPOINT)
    setup.metrics_logger.flush()


def quiet_lightning() -> None:
    """Drop noise that users can do nothing about (call in every process that trains)."""
    # Lightning's use of a torch API that torch has deprecated.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Lightning's advertisements for its cloud products.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )
