"""Lightning callbacks of the suite."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as L
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import nn

from degradation.checkpoints import save_trainer_checkpoint
from degradation.rundirs import PREVIOUS_CHECKPOINT

log = logging.getLogger("degradation")


class StepProgressBar(TQDMProgressBar):
    """One progress bar over all training iterations (not per epoch), with loss and error."""

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_start()
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self.train_progress_bar.reset(total=total)
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.set_description("Training")

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """Keep counting iterations across epochs (the parent resets the bar here)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        n = trainer.global_step
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class ProgressLog(L.Callback):
    """Progress as log lines every ``every`` iterations, for jobs that share a terminal."""

    def __init__(self, every: int = 100) -> None:
        if every < 1:
            raise ValueError("every must be a positive number of iterations")
        self.every = every
        self._start = 0.0
        self._start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._start_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        metrics = trainer.callback_metrics
        rate = (step - self._start_step) / max(time.perf_counter() - self._start, 1e-9)
        parts = [f"step {step}/{trainer.max_steps}", f"{rate:.1f} it/s"]
        for name in ("train_loss", "train_error", "test_error"):
            if name in metrics:
                parts.append(f"{name} {float(metrics[name]):.3f}")
        log.info("%s: %s", _net_name(pl_module), ", ".join(parts))


def _net_name(pl_module: L.LightningModule) -> str:
    net = getattr(pl_module, "net", None)
    if net is None or not hasattr(net, "depth"):
        return type(pl_module).__name__
    fam = getattr(net, "family", None) or ("resnet" if net.residual else "plain")
    return f"{fam}-{net.depth}"


class GradientNorms(L.Callback):
    """Log the L2 norm of the loss gradient w.r.t. each 3x3 conv's weights every ``every`` steps.

    Logged as ``grad_conv1`` ... ``grad_convN`` (forward order) at the step of the update, before
    the optimizer adds weight decay. Reads gradients only, so training is unchanged.
    """

    def __init__(self, every: int = 50) -> None:
        if every < 1:
            raise ValueError("every must be a positive number of iterations")
        self.every = every

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer
    ) -> None:
        if trainer.global_step % self.every:
            return
        convs = [
            m for m in pl_module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
        ]
        grads = [c.weight.grad for c in convs if c.weight.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]).cpu()
        # Straight to the loggers: self.log would repeat the values at every later step.
        values = {f"grad_conv{i}": v for i, v in enumerate(norms.tolist(), start=1)}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)


class LastCheckpoint(L.Callback):
    """Write ``<dirpath>/last.ckpt`` after every evaluation during training, keeping the one
    before as ``previous.ckpt``.

    The file is replaced atomically (written to a temporary file that is then moved over it), so
    a run killed at any moment, or a write that fails on a full disk, leaves the previous
    checkpoint or the new one, never part of one; should
    ``last.ckpt`` still be unreadable (a full disk, a damaged file system), the run resumes from
    ``previous.ckpt``. A checkpoint holds the weights, optimizer, schedule, loop counters and the
    position of the data stream: a run resumed from it continues exactly where it was.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    @property
    def path(self) -> Path:
        """Where the checkpoint goes."""
        return self.dirpath / "last.ckpt"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        save_trainer_checkpoint(trainer, self.path, previous=self.dirpath / PREVIOUS_CHECKPOINT)
