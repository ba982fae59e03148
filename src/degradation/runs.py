"""One run's directory: its metrics file, its summary, and the training that fills them.

A run directory holds
- ``config.yaml``: the resolved configuration (``.hydra/`` keeps Hydra's own record);
- ``metrics.csv``: one row per logged step (``step``, ``train_error``, ``train_loss``, ``lr``,
  ``test_error``, ...);
- ``checkpoints/``: ``last.ckpt`` (every ``checkpoint_every`` steps) and ``final.ckpt``;
- ``summary.json``: what was trained, its final numbers, wall time and status.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from degradation.models import count_parameters, family
from degradation.module import DegradationModule

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
FIRST_COLUMNS = ["step", "train_error", "train_loss", "lr", "test_error", "test_loss"]
# Final training error/loss: mean of the per-batch values over this last fraction of the steps.
FINAL_TRAIN_WINDOW = 0.05


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json`` atomically."""
    write_atomic(Path(run_dir) / SUMMARY_FILE, json.dumps(dict(summary), indent=2) + "\n")


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary, or None if it has none (yet)."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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


def check_config(cfg: DictConfig) -> None:
    """Refuse settings that cannot train, with a message naming the key."""
    steps = cfg.trainer.get("max_steps")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"trainer.max_steps must be a positive number of iterations; got {steps}")
    if not isinstance(cfg.eval_every, int) or cfg.eval_every <= 0:
        raise ValueError(
            f"eval_every must be a positive number of iterations; got {cfg.eval_every}"
        )


def auto_precision(accelerator: str = "auto") -> str:
    """`bf16-mixed` where bf16 runs fast (a CUDA GPU with bf16, a CPU with AMX), else `32-true`."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("auto", "cpu"):
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        if amx is not None and amx():
            return "bf16-mixed"
    return "32-true"


def apply_speed_settings(cfg: DictConfig) -> None:
    """Settle ``trainer.precision: auto`` and set the process-wide speed switches."""
    if str(cfg.trainer.get("precision", "32-true")) == "auto":
        OmegaConf.update(cfg, "trainer.precision", auto_precision(str(cfg.trainer.accelerator)))
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


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train the configured net into ``run_dir``; return its summary."""
    check_config(cfg)
    apply_speed_settings(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Hydra keeps .hydra/config.yaml with its interpolations; this copy is fully resolved, so the
    # run can be rebuilt (e.g. from its checkpoint) without Hydra.
    write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    setup = build(cfg, run_dir)
    datamodule, net, module = setup.datamodule, setup.net, setup.module
    trainer, metrics_logger = setup.trainer, setup.metrics_logger

    residual = bool(getattr(net, "residual", False))
    summary: dict[str, Any] = {
        "run": run_dir.name,
        "model": f"{family(residual)}-{cfg.model.depth}",
        "family": family(residual),
        "depth": int(cfg.model.depth),
        "width": int(cfg.model.width),
        "shortcut": cfg.model.get("shortcut") if residual else None,
        "data": datamodule.name,
        "seed": int(cfg.seed),
        "params": count_parameters(net),
        "max_steps": int(cfg.trainer.max_steps),
        "batch_size": int(datamodule.batch_size),
        "precision": str(cfg.trainer.precision),
        "status": "running",
        "started_at": _now(),
    }
    write_summary(run_dir, summary)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule)
        last_eval = metrics_logger.rows.get(trainer.global_step, {})
        if "test_error" not in last_eval:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        trainer.save_checkpoint(run_dir / "checkpoints" / "final.ckpt", weights_only=False)
        metrics_logger.flush()
    except BaseException as err:
        summary.update(
            status="interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
            error=f"{type(err).__name__}: {err}",
            steps=int(trainer.global_step),
            wall_time_s=round(time.perf_counter() - start, 2),
            finished_at=_now(),
        )
        metrics_logger.flush()
        write_summary(run_dir, summary)
        raise
    wall = time.perf_counter() - start
    summary.update(
        status="finished",
        steps=int(trainer.global_step),
        wall_time_s=round(wall, 2),
        iterations_per_s=round(trainer.global_step / wall, 3) if wall > 0 else None,
        finished_at=_now(),
        **final_metrics(metrics_logger.frame()),
    )
    write_summary(run_dir, summary)
    return summary


def quiet_lightning() -> None:
    """Drop noise that users can do nothing about (call in every process that trains)."""
    # Lightning's use of a torch API that torch has deprecated.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Lightning's advertisements for its cloud products.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )


def run_name(model: Mapping[str, Any], data: str, seed: int) -> str:
    """A readable run directory name, e.g. ``resnet56-B-fashion_mnist-seed1``."""
    residual = bool(model.get("residual", False))
    name = f"{family(residual)}{model.get('depth')}"
    if residual and model.get("shortcut", "A") != "A":
        name += f"-{model.get('shortcut')}"
    if model.get("width", 16) != 16:
        name += f"-w{model.get('width')}"
    return f"{name}-{data}-seed{seed}"


def paper_warmup(depth: int, steps: int = 400, from_depth: int = 110) -> int:
    """The paper's warm-up length for a net of this depth: 400 iterations from 110 layers on."""
    return steps if int(depth) >= from_depth else 0


def register_resolvers() -> None:
    """Make ``${run_name:...}`` and ``${paper_warmup:...}`` available to the Hydra configs."""
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("paper_warmup", paper_warmup, replace=True)
