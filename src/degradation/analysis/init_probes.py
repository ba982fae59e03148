"""Init-time probes: what depth, shortcuts and BN do to signals and gradients before training.

Each net (family x norm x depth) is built with its He initialisation (seeded) and run once in
training mode (BN with the batch's own statistics, as at the first step) on a fixed batch of
real images, with no update. Three measures:

- **Gradient norms**: the root-mean-square loss gradient per weight of each 3x3 conv (its L2 norm
  over the square root of its size, so that layers of different sizes compare), in forward
  order. The direction is kept: ``grad_log_ratio`` is log10(first layer / last layer), > 0 when
  gradients grow toward the input (exploding), < 0 when they shrink (vanishing).
- **Forward signal**: the std of each block's output (after its last ReLU, the addition
  included); ``signal_std_last`` is the last block's.
- **Gradient correlation** (the "shattered gradients" measure of Balduzzi et al. 2017, in this
  form): for image x, a random direction u scaled to ``eps * |x|`` and a fixed random projection
  ``f = <w, logits>``, the Pearson correlation over pixels between df/dx at x and at x + u,
  averaged over the images. 1 when gradients barely change between nearby inputs (a linear map
  gives exactly 1), near 0 when they look like white noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from degradation.analysis.base import Context, Section, probe_section, write_probe
from degradation.models import BasicBlock, BottleneckBlock, Unit, cifar_net

BLOCKS = (Unit, BasicBlock, BottleneckBlock)


def conv3x3_layers(net: nn.Module) -> list[nn.Conv2d]:
    """The 3x3 convs in forward order."""
    return [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def gradient_correlation(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    eps: float = 0.1,
    generator: torch.Generator | None = None,
) -> float:
    """Mean over images of the Pearson correlation between the input gradients of a fixed random
    projection of the outputs at ``x`` and at ``x + u`` (``|u| = eps * |x|`` per image)."""
    x = x.detach()
    with torch.no_grad():
        out_shape = net(x[:1]).shape[1:]
    w = torch.randn(out_shape, generator=generator)
    u = torch.randn(x.shape, generator=generator)
    scale = eps * x.flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1).clamp_min(1e-12)
    u = u * scale.view(-1, *[1] * (x.dim() - 1))

    def input_gradient(inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.clone().requires_grad_(True)
        (net(inputs) * w).sum().backward()
        return inputs.grad.flatten(1)

    g0, g1 = input_gradient(x), input_gradient(x + u)
    g0 = g0 - g0.mean(dim=1, keepdim=True)
    g1 = g1 - g1.mean(dim=1, keepdim=True)
    denom = g0.norm(dim=1) * g1.norm(dim=1)
    corr = (g0 * g1).sum(dim=1) / denom
    # constant gradients (a linear map) have no spread: identical vectors, correlation 1
    same = torch.isclose(g0, g1, rtol=1e-5, atol=1e-12).all(dim=1)
    corr = torch.where(denom > 0, corr, same.to(corr.dtype))
    return float(corr.mean())


def probe_net(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.1, seed: int = 0
) -> dict:
    """The three init-time measures of one net on one batch (training mode, no update)."""
    net.train()
    signals: list[float] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: signals.append(float(out.detach().std())))
        for m in net.modules()
        if isinstance(m, BLOCKS)
    ]
    try:
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    # per weight (RMS), so that layers of different sizes compare
    grads = [float(c.weight.grad.norm() / c.weight.numel() ** 0.5) for c in conv3x3_layers(net)]
    correlation = gradient_correlation(
        net, x, eps, generator=torch.Generator().manual_seed(seed + 1)
    )
    first, last = grads[0], grads[-1]
    ratio = math.log10(first / last) if first > 0 and last > 0 else math.nan
    return {
        "loss": float(loss.detach()),
        "grad_norms": grads,
        "signal_stds": signals,
        "grad_log_ratio": ratio,
        "signal_std_last": signals[-1] if signals else math.nan,
        "grad_correlation": correlation,
    }


def run_probes(
    x: torch.Tensor,
    y: torch.Tensor,
    depths: Sequence[int],
    families: Sequence[str] = ("plain", "resnet"),
    norms: Sequence[str] = ("batch", "none"),
    width: int = 16,
    num_classes: int = 10,
    eps: float = 0.1,
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe every family x norm x depth: (one row per net, one row per net and layer)."""
    nets, layers = [], []
    total, start = len(families) * len(norms) * len(depths), time.perf_counter()
    for i, (family, norm, depth) in enumerate(
        (f, n, d) for f in families for n in norms for d in depths
    ):
        torch.manual_seed(seed)
        net = cifar_net(depth, family == "resnet", "A", width, x.shape[1], num_classes, norm=norm)
        result = probe_net(net, x, y, eps, seed)
        key = {"family": family, "norm": norm, "depth": depth}
        nets.append({**key, **{k: v for k, v in result.items() if not isinstance(v, list)}})
        for measure in ("grad_norms", "signal_stds"):
            for index, value in enumerate(result[measure], start=1):
                layers.append({**key, "measure": measure[:-1], "layer": index, "value": value})
        progress(
            f"[{i + 1}/{total}] {family}-{depth} norm={norm}: grad log10(first/last) "
            f"{result['grad_log_ratio']:+.2f}, last signal std {result['signal_std_last']:.3g}, "
            f"gradient correlation {result['grad_correlation']:.3f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    return pd.DataFrame(nets), pd.DataFrame(layers)


PANELS = {
    "grad_log_ratio": "gradient norm, log10(first / last layer)\n> 0 exploding toward the input",
    "signal_std_last": "std of the last block's output",
    "grad_correlation": "gradient correlation at nearby inputs\n(1 smooth, 0 shattered)",
}


def figure(nets: pd.DataFrame) -> Figure:
    """Each measure against depth; one line per family (color) and norm (line style)."""
    fig = Figure(figsize=(4.2 * len(PANELS), 3.6))
    axes = fig.subplots(1, len(PANELS))
    colors, styles = {"plain": "tab:red", "resnet": "tab:blue"}, {"batch": "-", "none": "--"}
    for ax, (column, title) in zip(axes, PANELS.items(), strict=True):
        for (family, norm), group in nets.groupby(["family", "norm"], sort=True):
            group = group.sort_values("depth")
            ax.plot(group["depth"], group[column], styles.get(norm, ":"), marker="o",
                    color=colors.get(family), label=f"{family}, norm={norm}")  # fmt: skip
        ax.set_xlabel("depth")
        ax.set_title(title, fontsize=9)
        if column == "signal_std_last":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="gray", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle("At initialisation, before any update", fontsize=10)
    fig.tight_layout()
    return fig


def report_section(nets: pd.DataFrame) -> str:
    """A Markdown table of the per-net measures with what they mean."""
    table = nets[["family", "norm", "depth", "loss", *PANELS]].copy()
    table = table.rename(columns={
        "grad_log_ratio": "grad log10(first/last)", "signal_std_last": "last signal std",
        "grad_correlation": "grad correlation"})  # fmt: skip
    return (
        "## At initialisation\n\n"
        + (__doc__ or "").split("\n\n", 1)[1].strip()
        + "\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )


def write(nets: pd.DataFrame, layers: pd.DataFrame, out: Path, formats=("png", "pdf")) -> None:
    """init_probes.csv, init_probe_layers.csv, init_probes.{png,pdf}, init_probes.md."""
    tables = {"init_probes": nets, "init_probe_layers": layers}
    write_probe(out, "init_probes", tables, figure(nets), report_section(nets), formats)


TITLE = "At initialisation: gradients, signal and shattering by depth"
NEEDS = "init_probes.csv from experiments/probe_init.py (in the output or a --probes directory)"


def section(ctx: Context) -> Section:
    """This probe's table and figure, where its outputs are found."""
    section, _ = probe_section(
        ctx, TITLE, NEEDS, ["init_probes.csv"], "init_probes.png", report_section
    )
    return section
