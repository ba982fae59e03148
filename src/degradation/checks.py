"""Refuse settings that cannot train, before anything is written, with a message naming the key
(no torch at import: a CUDA-only setting asks torch only when it is given)."""

from __future__ import annotations

import math

from omegaconf import DictConfig, ListConfig, OmegaConf

from degradation.designs import check_model

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
        str(cfg.trainer.get("accelerator")) == "cpu" or not _cuda_available()
    ):
        raise ValueError(
            "trainer.sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on "
            "CPUs); leave it false here"
        )
    check_model(cfg.model)


def _cuda_available() -> bool:
    import torch  # only where a setting needs a GPU: the rest of this module stays torch-free

    return torch.cuda.is_available()
