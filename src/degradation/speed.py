"""How fast, never what is computed: precision and memory-format choice, the device's name,
and the guard that keeps oneDNN's crashing channels-last kernels away."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

# Set to a Lightning precision (e.g. 32-true) to make `trainer.precision: auto` pick it on this
# machine: how the tests are run as on a CPU without AMX.
PRECISION_ENV = "DEGRADATION_PRECISION"


def uses_cuda(accelerator: str = "auto") -> bool:
    """Whether Lightning trains on a CUDA GPU for ``trainer.accelerator``."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def device_for(accelerator: str = "auto") -> torch.device:
    """The device Lightning picks for ``trainer.accelerator`` (a single-device run)."""
    return torch.device("cuda" if uses_cuda(accelerator) else "cpu")


def cpu_description() -> dict[str, object]:
    """CPU model, clock, cores and vector extensions, from /proc/cpuinfo where readable."""
    info: dict[str, object] = {"name": platform.processor() or "CPU", "ghz": None, "flags": set()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["name"] = value
        elif key == "cpu MHz" and info["ghz"] is None:
            info["ghz"] = float(value) / 1000
        elif key == "flags":
            info["flags"] = set(value.split())
    return info


def auto_precision(accelerator: str = "auto") -> str:
    """`bf16-mixed` where bf16 runs fast (a CUDA GPU with bf16, a CPU with AMX), else `32-true`;
    the environment variable ``DEGRADATION_PRECISION`` overrides the choice."""
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        return forced
    if uses_cuda(accelerator):
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
    return uses_cuda(accelerator) or not str(precision).startswith("32")


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


def device_name(device: torch.device) -> str:
    """A readable name of the device a run trains on."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_description()['name']}, {torch.get_num_threads()} threads"


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def is_strided_1x1(module: nn.Module) -> bool:
    """A 1x1 convolution with stride > 1 (the projection shortcuts where the shape changes)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and any(s > 1 for s in module.stride)
    )


def keep_strided_1x1_nchw(net: nn.Module) -> int:
    """Run a channels-last net's strided 1x1 convolutions in NCHW layout; return how many.

    oneDNN's fp32 CPU backward of a channels-last 1x1 stride-2 convolution with few input
    channels (4 to 8, on 56x56 and larger maps) segfaults or hangs on some CPUs (seen with torch
    2.14 on AMD EPYC). These layers are few and cheap, so on CPUs they take NCHW weights and
    inputs (a forward pre-hook), and the rest of the net stays channels-last. Idempotent.
    """
    count = 0
    for m in net.modules():
        if is_strided_1x1(m):
            # clone, not contiguous(): a 1x1 kernel's channels-last strides count as contiguous
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            if not getattr(m, "_nchw_hook", False):
                m.register_forward_pre_hook(_contiguous_inputs)
                m._nchw_hook = True
            count += 1
    return count
