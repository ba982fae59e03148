"""Loss landscape of trained nets along filter-normalised random directions (Li et al. 2018).

A direction has one random Gaussian tensor per conv or linear weight, each of its filters (output
unit) rescaled to the norm of the matching filter of the trained weights; BN parameters and biases
get no component, as in Li et al. The loss is the training loss (cross-entropy, BN in eval mode)
on a fixed subset of training images, at ``w + a d1`` (1-D, a in [-1, 1]) and ``w + a d1 + b d2``
(2-D). One number per net for comparisons: the largest eigenvalue of the Hessian of that loss
with respect to the conv and linear weights, by power iteration on Hessian-vector products.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import nn
from torch.func import functional_call

from degradation.analysis.base import Context, Section, probe_section, write_probe


def weight_names(net: nn.Module) -> list[str]:
    """Names of the conv and linear weights: the parameters a direction moves."""
    return [
        f"{module_name}.weight" if module_name else "weight"
        for module_name, m in net.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


def filter_normalized_direction(
    net: nn.Module, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """A random direction over every parameter: filter-normalised for conv and linear weights,
    zero for BN parameters and biases."""
    moved = set(weight_names(net))
    direction = {}
    for name, p in net.named_parameters():
        if name not in moved:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        w_norm = p.detach().flatten(1).norm(dim=1)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        direction[name] = d * (w_norm / d_norm).view(-1, *[1] * (p.dim() - 1))
    return direction


def loss_at(net: nn.Module, params: dict[str, torch.Tensor], x, y) -> float:
    """Cross-entropy of ``net`` with these parameters (its buffers as they are), eval mode."""
    with torch.no_grad():
        return float(F.cross_entropy(functional_call(net, params, (x,)), y))


def surface_1d(net, x, y, direction, steps: int = 21) -> pd.DataFrame:
    """Loss at w + a d for ``steps`` values of a in [-1, 1]."""
    net.eval()
    base = {k: v.detach() for k, v in net.named_parameters()}
    alphas = np.linspace(-1, 1, steps)
    losses = [loss_at(net, {k: base[k] + a * direction[k] for k in base}, x, y) for a in alphas]
    return pd.DataFrame({"alpha": alphas, "loss": losses})


def surface_2d(net, x, y, d1, d2, steps: int = 11) -> pd.DataFrame:
    """Loss at w + a d1 + b d2 on a ``steps`` x ``steps`` grid over [-1, 1]^2."""
    net.eval()
    base = {k: v.detach() for k, v in net.named_parameters()}
    grid = np.linspace(-1, 1, steps)
    rows = []
    for a in grid:
        for b in grid:
            params = {k: base[k] + a * d1[k] + b * d2[k] for k in base}
            rows.append({"alpha": a, "beta": b, "loss": loss_at(net, params, x, y)})
    return pd.DataFrame(rows)


def top_hessian_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    generator: torch.Generator | None = None,
) -> float:
    """Largest-magnitude eigenvalue of the Hessian of ``loss_fn()`` w.r.t. ``params``, by power
    iteration on Hessian-vector products (double backward)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    eigenvalue = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eigenvalue = float(sum((h * u).sum() for h, u in zip(hv, v, strict=True)))
        v = [h.detach() for h in hv]
    return eigenvalue


def study(
    nets: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    steps_1d: int = 21,
    steps_2d: int = 11,
    hessian_iterations: int = 20,
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """1-D and 2-D surfaces and the top Hessian eigenvalue of each named net."""
    ones, twos, numbers, start = [], [], [], time.perf_counter()
    for name, net in nets.items():
        net.eval()
        g = torch.Generator().manual_seed(seed)
        d1 = filter_normalized_direction(net, g)
        d2 = filter_normalized_direction(net, g)
        one = surface_1d(net, x, y, d1, steps_1d).assign(net=name)
        two = surface_2d(net, x, y, d1, d2, steps_2d).assign(net=name)
        params = [p for n, p in net.named_parameters() if n in set(weight_names(net))]
        top = top_hessian_eigenvalue(
            lambda net=net: F.cross_entropy(net(x), y), params, hessian_iterations,
            torch.Generator().manual_seed(seed + 1),
        )  # fmt: skip
        center = float(one.loc[one["alpha"].abs().idxmin(), "loss"])
        numbers.append({"net": name, "loss_at_solution": center,
                        "loss_at_edge_1d": float(one["loss"].iloc[[0, -1]].mean()),
                        "top_hessian_eigenvalue": top})  # fmt: skip
        ones.append(one)
        twos.append(two)
        progress(f"{name}: 1-D {steps_1d} points, 2-D {steps_2d}x{steps_2d}, top Hessian "
                 f"eigenvalue {top:.3g} ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    return pd.concat(ones), pd.concat(twos), pd.DataFrame(numbers)


def figure(one: pd.DataFrame, two: pd.DataFrame) -> Figure:
    """1-D curves (left) and one 2-D contour panel per net with the same contour levels."""
    names = sorted(two["net"].unique())
    fig = Figure(figsize=(4.4 * (1 + len(names)), 3.8), layout="constrained")
    axes = fig.subplots(1, 1 + len(names))
    for name in names:
        curve = one[one["net"] == name]
        color = "tab:blue" if name.startswith("resnet") else "tab:red"
        axes[0].plot(curve["alpha"], curve["loss"], "o-", ms=3, color=color, label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step along a filter-normalised direction")
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    finite = two["loss"][np.isfinite(two["loss"])]
    levels = np.geomspace(max(finite.min(), 1e-3), max(finite.max(), 1e-2), 15)
    for ax, name in zip(axes[1:], names, strict=True):
        grid = two[two["net"] == name].pivot(index="beta", columns="alpha", values="loss")
        contour = ax.contour(grid.columns, grid.index, grid.values, levels=levels,
                             norm=LogNorm(), cmap="viridis")  # fmt: skip
        ax.plot([0], [0], "k+")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    bar = fig.colorbar(contour, ax=axes[1:], shrink=0.8, label="training loss (same levels)")
    bar.set_ticks(levels[::2], labels=[f"{v:.2g}" for v in levels[::2]])
    return fig


def report_section(numbers: pd.DataFrame) -> str:
    """The per-net numbers with what they mean."""
    return (
        "## Loss landscape\n\n" + (__doc__ or "").split("\n\n", 1)[1].strip() + "\n\n"
        + numbers.to_markdown(index=False, floatfmt=".4g") + "\n"
    )  # fmt: skip


def write(
    one: pd.DataFrame, two: pd.DataFrame, numbers: pd.DataFrame, out: Path, formats=("png", "pdf")
) -> None:
    """landscape_1d.csv, landscape_2d.csv, landscape.csv, landscape.{png,pdf}, landscape.md."""
    tables = {"landscape_1d": one, "landscape_2d": two, "landscape": numbers}
    text = report_section(numbers)
    write_probe(out, "landscape", tables, figure(one, two), text, formats, "loss landscape")


TITLE = "Loss landscape of trained nets"
NEEDS = "landscape.csv from experiments/probe_landscape.py"


def section(ctx: Context) -> Section:
    """This probe's table and figure, where its outputs are found."""
    section, _ = probe_section(
        ctx, TITLE, NEEDS, ["landscape.csv"], "landscape.png", report_section
    )
    return section
