"""The LightningModule: the paper's training recipe and what is logged when.

Logged against the global step (the number of optimizer updates done so far):
- ``train_error`` and ``train_loss`` of every training batch, measured in training mode on the
  batch about to be learned from (the paper's dashed curves), and the learning rate ``lr``;
- ``test_error`` (and ``test_loss``) on the full test set every ``eval_every`` steps and at the
  end (the bold curves); ``val_error`` as well when a validation split is held out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import pytorch_lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from degradation.speed import keep_strided_1x1_nchw


def paper_schedule(
    optimizer: Optimizer,
    milestones: Sequence[int] = (32000, 48000),
    gamma: float = 0.1,
    warmup_steps: int = 0,
    warmup_factor: float = 0.1,
) -> LambdaLR:
    """Step schedule in iterations: lr x ``gamma`` at each milestone, x ``warmup_factor`` before
    ``warmup_steps`` (the paper's ResNet-110 warm-up: 0.1 x 0.1 = 0.01).

    One multiplier function covers both, so the warm-up cannot be undone by the decay schedule.
    """
    milestones = sorted(int(m) for m in milestones)
    if any(m <= 0 for m in milestones):
        raise ValueError(f"milestones must be positive step counts; got {milestones}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0; got {warmup_steps}")

    def factor(step: int) -> float:
        decay = gamma ** sum(step >= m for m in milestones)
        return decay * (warmup_factor if step < warmup_steps else 1.0)

    return LambdaLR(optimizer, factor)


class Diverged(RuntimeError):
    """The training loss stopped being a finite number."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}")
        self.step, self.loss = step, loss


def error_rate(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of wrong top-1 predictions."""
    return (logits.argmax(dim=1) != targets).float().mean()


class DegradationModule(L.LightningModule):
    """Trains one net with SGD and a step schedule stepped every iteration.

    ``channels_last`` keeps weights and inputs in NHWC layout (faster convolutions on GPUs and
    in bf16 on CPUs; on CPUs strided 1x1 convolutions stay NCHW, see
    :func:`~degradation.speed.keep_strided_1x1_nchw`); ``compile`` runs the net through
    ``torch.compile``. Neither changes what is computed.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[[Optimizer], LRScheduler] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.channels_last = channels_last
        # Not registered as a submodule, so checkpoints keep the plain net's parameter names.
        object.__setattr__(self, "_run_net", torch.compile(net) if compile else net)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._wall_before = 0.0  # training time of earlier attempts, from the checkpoint
        self._eval_before = 0.0  # of which evaluation, likewise
        self._eval_seconds = 0.0  # evaluation time in this process
        self._eval_start: float | None = None
        # the run's books kept in its checkpoints too (started_at, attempts): they outlive a
        # damaged summary.json
        self.run_record: dict[str, object] = {}
        self._session_start: float | None = None

    def setup(self, stage: str) -> None:
        """On a CPU, keep the layers that oneDNN cannot run channels-last in NCHW."""
        if self.channels_last and self.trainer.strategy.root_device.type == "cpu":
            keep_strided_1x1_nchw(self.net)

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout the net's input is given in: the one ``channels_last`` chose."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Both ways: a batch may arrive in either layout (the batched crop returns an NHWC view),
        # and a channels-last batch in an NCHW net would still reach oneDNN's channels-last
        # kernels, the ones that crash in fp32 on some CPUs.
        return self._run_net(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        stats = torch.stack([loss.detach(), error_rate(logits.detach(), y)])
        if self.trainer.world_size > 1:  # the global batch's numbers, the same in every process
            stats = self.trainer.strategy.reduce(stats, reduce_op="mean")
        loss_value, err = (float(v) for v in stats)
        if not math.isfinite(loss_value):
            raise Diverged(self.global_step, loss_value)
        # the net's learning rate: the largest group's (Fixup's scalars learn at a tenth of it)
        lr = max(group["lr"] for group in self.trainer.optimizers[0].param_groups)
        # Written to the loggers here, at the step this batch is learned at, so that the row is
        # on record before any checkpoint taken after the update (Lightning logs step metrics
        # only after the batch-end hooks, where checkpoints are saved).
        row = {"train_loss": loss_value, "train_error": err, "lr": lr}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.global_step)
        self.log("train_loss", loss_value, on_step=True, prog_bar=True, logger=False)
        self.log("train_error", row["train_error"], on_step=True, prog_bar=True, logger=False)
        return loss

    def on_validation_start(self) -> None:
        """In a multi-process run, every process evaluates with rank 0's BN statistics (those
        its checkpoints hold), so the evaluation is the same whichever process logs it."""
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            for buffer in self.net.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def on_validation_epoch_start(self) -> None:
        self._eval_start = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        if self._eval_start is not None:
            self._eval_seconds += time.perf_counter() - self._eval_start
            self._eval_start = None

    def on_fit_start(self) -> None:
        self._session_start = time.perf_counter()

    def session_time(self) -> float:
        """Seconds since this process started fitting."""
        return 0.0 if self._session_start is None else time.perf_counter() - self._session_start

    def wall_time(self) -> float:
        """Seconds spent training this run, over all attempts (up to their last checkpoints)."""
        return self._wall_before + self.session_time()

    def eval_time(self) -> float:
        """Seconds of :meth:`wall_time` spent evaluating (periodic and final evaluations)."""
        return self._eval_before + self._eval_seconds

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wall_time_s"] = self.wall_time()
        checkpoint["eval_time_s"] = self.eval_time()
        checkpoint["run_record"] = dict(self.run_record)
        # Every row up to this step goes to disk before the checkpoint does: a run resumed from
        # the checkpoint then continues its metrics file without a gap.
        for logger in self.loggers:
            flush = getattr(logger, "flush", None)
            if callable(flush):
                flush()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._wall_before = float(checkpoint.get("wall_time_s", 0.0))
        self._eval_before = float(checkpoint.get("eval_time_s", 0.0))

    def _eval_name(self, dataloader_idx: int) -> str:
        datamodule = getattr(self.trainer, "datamodule", None)
        names = getattr(datamodule, "eval_names", None) or ["test"]
        return names[dataloader_idx]

    def _evaluate(self, batch, dataloader_idx: int, name: str | None = None) -> None:
        x, y = batch
        logits = self(x)
        name = name or self._eval_name(dataloader_idx)
        n = len(y)
        loss = F.cross_entropy(logits, y)
        err = error_rate(logits, y)
        # Weighted by batch size so the epoch value is the error over the whole set.
        # sync_dist: the processes' values are averaged (equal ones for device-resident data, which
        # every process evaluates whole; shares of the set for image folders).
        kwargs = dict(
            on_step=False, on_epoch=True, batch_size=n, add_dataloader_idx=False, sync_dist=True
        )
        self.log(f"{name}_error", err, prog_bar=(name == "test"), **kwargs)
        self.log(f"{name}_loss", loss, **kwargs)
        if dataloader_idx == 0:
            # x-value of the evaluation: the number of updates done (Lightning would otherwise
            # use the index of the last training batch during fit, and the count after it).
            self.log("step", float(self.global_step), **kwargs)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, name="test")

    def configure_optimizers(self):
        params = self.parameters()
        groups = getattr(self.net, "parameter_groups", None)
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        if groups is not None and lr is not None:  # e.g. Fixup's scalars at a tenth of the lr
            params = groups(float(lr)) or params
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
