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
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from degradation.checkpoints import BadFile, load_checkpoint, save_trainer_checkpoint
from degradation.data.base import DataUnavailableError
from degradation.metrics_file import logged_through, read_metrics_file
from degradation.models import (
    check_cifar_config,
    check_dense_depth,
    check_depth,
    check_imagenet_depth,
    count_parameters,
)
from degradation.module import DegradationModule, Diverged
from degradation.rundirs import (  # noqa: F401 - re-exported: the run directory's vocabulary
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DONE,
    EXIT_BAD_SETTING,
    EXIT_LOCKED,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    LOG_FILE,
    LOG_FORMAT,
    METRICS_FILE,
    PREVIOUS_CHECKPOINT,
    SUMMARY_FILE,
    RunLock,
    RunLocked,
    family,
    is_rank_zero,
    model_family,
    model_fields,
    paper_warmup,
    provenance,
    read_summary,
    register_resolvers,
    run_dir_name,
    run_name,
    unwritable,
    write_atomic,
    write_summary,
)

log = logging.getLogger(__name__)
# Depth checks of the model builders, run before anything is written.
DEPTH_CHECKS = {
    "cifar_net": check_depth,
    "imagenet_net": check_imagenet_depth,
    "densenet": check_dense_depth,
}
# Checks of the other model options (combinations that cannot or should not be built).
OPTION_CHECKS = {"cifar_net": check_cifar_config}
FIRST_COLUMNS = ["step", "train_error", "train_loss", "lr", "test_error", "test_loss"]
# Final training error/loss: mean of the per-batch values over this last fraction of the steps.
FINAL_TRAIN_WINDOW = 0.05


class MetricsLogger(Logger):
    """A Lightning logger that keeps one row per global step in ``<save_dir>/metrics.csv``.

    Metrics logged at the same step (training batch, evaluation) are merged into one row. The
    file is rewritten atomically every ``flush_every`` steps and at the end.
    """

    def __init__(self, save_dir: str | Path, flush_every: int = 500) -> None:
        super().__init__()
        self._save_dir = Path(save_dir)
        self.flush_every = flush_every
        self.rows: dict[int, dict[str, float]] = {}
        self._last_flush = 0

    @property
    def name(self) -> str:
        return "metrics"

    def resume(self, step: int, frame: pd.DataFrame | None = None) -> None:
        """Continue an earlier attempt's file from a checkpoint taken after ``step`` updates.

        Rows up to ``step`` (its row holds the evaluation that preceded the checkpoint) are
        kept, later ones dropped: they will be logged again, identically. Damaged rows are
        named in one line and dropped (the caller chose a checkpoint they do not reach past,
        :func:`resume_point`).
        """
        frame = self.read() if frame is None else frame
        self.rows = {}
        for record in frame[frame["step"] <= step].to_dict("records") if len(frame) else []:
            row_step = int(record.pop("step"))
            self.rows[row_step] = {k: v for k, v in record.items() if not pd.isna(v)}
        self._last_flush = max(self.rows, default=0)

    def read(self) -> pd.DataFrame:
        """The whole rows of the file an earlier attempt left (empty if none); each damaged row
        is named in a warning and dropped."""
        if not self.path.is_file():
            return pd.DataFrame()
        frame, problems = read_metrics_file(self.path)
        for problem in problems:
            log.warning("%s", problem)
        return frame if "step" in frame else pd.DataFrame()

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._save_dir)

    @property
    def path(self) -> Path:
        """Where the CSV file goes."""
        return self._save_dir / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: Hydra already saved the resolved configuration in the run directory."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = int(step if step is not None else max(self.rows, default=-1) + 1)
        row = self.rows.setdefault(step, {})
        for key, value in metrics.items():
            row[key] = float(value)

    def frame(self) -> pd.DataFrame:
        """The rows so far as a DataFrame sorted by step."""
        df = pd.DataFrame.from_dict(self.rows, orient="index").sort_index()
        df.index.name = "step"
        df = df.reset_index()
        ordered = [c for c in FIRST_COLUMNS if c in df.columns]
        return df[ordered + sorted(c for c in df.columns if c not in ordered)]

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this after every log call; write only every ``flush_every`` steps."""
        if self.rows and max(self.rows) - self._last_flush >= self.flush_every:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write all rows now."""
        if self.rows:
            write_atomic(self.path, self.frame().to_csv(index=False))
            self._last_flush = max(self.rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()


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


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# Settings that must be positive numbers (checked where the configuration has them), and what
# each is, for the message.
POSITIVE = {
    "optimizer.lr": "the learning rate",
    "model.width": "the first stage's number of channels",
    "model.growth_rate": "DenseNet's growth rate",
    "data.batch_size": "images per training batch",
    "data.eval_batch_size": "images per evaluation batch",
    "data.num_train": "training images",
    "data.num_test": "test images",
    "scheduler.gamma": "the learning-rate factor at each milestone",
}
# Settings that must lie in [low, high).
IN_RANGE = {
    "optimizer.momentum": (0.0, 1.0),
    "optimizer.weight_decay": (0.0, math.inf),
    "scheduler.warmup_steps": (0.0, math.inf),
}


def _check_numbers(cfg: DictConfig) -> None:
    """Refuse non-positive sizes and rates, naming the key and the value."""
    for key, what in POSITIVE.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{key}={value!r}: must be a positive number ({what})")
    for key, (low, high) in IN_RANGE.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value < high
        ):
            upper = "" if math.isinf(high) else f" and below {high:g}"
            raise ValueError(f"{key}={value!r}: must be at least {low:g}{upper}")
    milestones = OmegaConf.select(cfg, "scheduler.milestones", default=None)
    if milestones is not None and not all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones
    ):
        shown = (
            OmegaConf.to_container(milestones) if isinstance(milestones, ListConfig) else milestones
        )
        raise ValueError(f"scheduler.milestones={shown}: must be positive iteration counts")
    if OmegaConf.select(cfg, "optimizer.nesterov", default=False) and not OmegaConf.select(
        cfg, "optimizer.momentum", default=0
    ):
        raise ValueError("optimizer.nesterov=true: needs optimizer.momentum above 0")


def check_config(cfg: DictConfig) -> None:
    """Refuse settings that cannot train, with a message naming the key."""
    _check_numbers(cfg)
    steps = cfg.trainer.get("max_steps")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"trainer.max_steps must be a positive number of iterations; got {steps}")
    if not isinstance(cfg.eval_every, int) or cfg.eval_every <= 0:
        raise ValueError(
            f"eval_every must be a positive number of iterations; got {cfg.eval_every}"
        )
    channels_last = (cfg.get("speed") or {}).get("channels_last", False)
    if channels_last not in (True, False, "auto"):
        raise ValueError(f"speed.channels_last must be true, false or auto; got {channels_last!r}")
    devices = cfg.trainer.get("devices", 1)
    per_node = len(devices) if isinstance(devices, ListConfig) else devices
    batch = cfg.data.get("batch_size")
    if isinstance(per_node, int) and per_node > 0 and isinstance(batch, int):
        processes = per_node * int(cfg.trainer.get("num_nodes", 1))
        if batch % processes:
            raise ValueError(
                f"data.batch_size={batch} is the global batch and cannot be shared evenly by "
                f"{processes} processes; choose a batch size divisible by {processes}"
            )
    if cfg.trainer.get("sync_batchnorm") and (
        str(cfg.trainer.get("accelerator")) == "cpu" or not torch.cuda.is_available()
    ):
        raise ValueError(
            "trainer.sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on "
            "CPUs); leave it false here"
        )
    builder = str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1]
    option_check = OPTION_CHECKS.get(builder)
    if option_check is not None:
        try:
            option_check(cfg.model)
        except ValueError as err:
            raise ValueError(f"model: {err}") from None
    depth_check = DEPTH_CHECKS.get(builder)
    if depth_check is not None:
        # the CIFAR family's valid depths depend on its unit (6n+2 basic, 9n+2 bottleneck)
        unit = (cfg.model.get("unit", "basic"),) if builder == "cifar_net" else ()
        try:
            depth_check(cfg.model.depth, *unit)
        except ValueError as err:
            raise ValueError(f"model.depth: {err}") from None


# Set to a Lightning precision (e.g. 32-true) to make `trainer.precision: auto` pick it on this
# machine: how the tests are run as on a CPU without AMX.
PRECISION_ENV = "DEGRADATION_PRECISION"


def auto_precision(accelerator: str = "auto") -> str:
    """`bf16-mixed` where bf16 runs fast (a CUDA GPU with bf16, a CPU with AMX), else `32-true`;
    the environment variable ``DEGRADATION_PRECISION`` overrides the choice."""
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        return forced
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("auto", "cpu"):
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        if amx is not None and amx():
            return "bf16-mixed"
    return "32-true"


def auto_channels_last(accelerator: str, precision: str) -> bool:
    """Channels-last on CUDA GPUs and on CPUs in reduced precision; NCHW in fp32 on CPUs.

    With true NCHW as the baseline it pays on an Intel CPU with AMX (bf16 1.07-1.36x, fp32
    1.05-1.21x: results/benchmarks/channels_last_intel), but in fp32 on CPUs it reaches oneDNN
    kernels that crash, and on CPUs without AMX (where fp32 is the default) its gain is not
    measured: there NCHW is the safe choice, and ``speed.channels_last=true`` asks for it.
    """
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return cuda or not str(precision).startswith("32")


def apply_speed_settings(cfg: DictConfig) -> None:
    """Settle ``trainer.precision`` and ``speed.channels_last`` where they are ``auto``, and set
    the process-wide speed switches."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if str(cfg.trainer.get("precision", "32-true")) == "auto":
        OmegaConf.update(cfg, "trainer.precision", auto_precision(accelerator))
    speed = cfg.get("speed")
    if speed is not None and str(speed.get("channels_last")) == "auto":
        choice = auto_channels_last(accelerator, str(cfg.trainer.precision))
        OmegaConf.update(cfg, "speed.channels_last", choice)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for what runs in fp32


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


def device_name(device: torch.device) -> str:
    """A readable name of the device a run trains on."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {torch.get_num_threads()} threads"


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


def user_error(err: BaseException) -> str | None:
    """The message of an error the user fixes in the command line (a bad setting, missing data),
    also when Hydra's instantiation wraps it; None for any other error."""
    if isinstance(err, InstantiationException) and isinstance(
        err.__cause__, (ValueError, DataUnavailableError)
    ):
        err = err.__cause__
    if isinstance(err, (ValueError, DataUnavailableError)):
        return str(err)
    return unwritable(err)


def _main(argv: Sequence[str]) -> int:
    """``python -m degradation.runs RUN_DIR CONFIG [RECORD]``: train the run from a resolved
    configuration file (how sweeps train each run in a process of its own); RECORD, a JSON
    object of file name -> text, is written into the run directory once the run is locked."""
    if len(argv) not in (2, 3):
        print(
            "usage: python -m degradation.runs RUN_DIR CONFIG_YAML [RECORD_JSON]", file=sys.stderr
        )
        return EXIT_BAD_SETTING
    run_dir, config = Path(argv[0]), Path(argv[1])
    record = json.loads(Path(argv[2]).read_text()) if len(argv) == 3 else None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=[logging.StreamHandler()])
    quiet_lightning()
    try:
        train(OmegaConf.load(config), run_dir, record=record)
    except RunLocked as err:
        log.error("%s", err)
        return EXIT_LOCKED
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        log.error("%s (not trained)", message)
        return EXIT_BAD_SETTING
    return 0


if __name__ == "__main__":
    # Through the package's module, not this __main__ copy, so that classes named in configs
    # (degradation.runs.MetricsLogger) are the ones the code checks against.
    from degradation import runs

    sys.exit(runs._main(sys.argv[1:]))
