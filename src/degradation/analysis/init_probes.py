"""Init-time probes: what depth, shortcuts and BN do to signals and gradients before training.

Each net (family x norm x depth x init seed) is built with its He initialisation (seeded,
``torch.manual_seed(seed)``) and run once in training mode (BN with the batch's own statistics,
as at the first step) on a fixed batch of real images, with no update. Four measures:

- **Gradient norms**: the root-mean-square loss gradient per weight of each 3x3 conv (its L2 norm
  over the square root of its size, so that layers of different sizes compare), in forward
  order. The direction is kept: ``grad_log_ratio`` is log10(first layer / last layer), > 0 when
  gradients grow toward the input (exploding), < 0 when they shrink (vanishing).
- **Forward signal**: the std of each block's output (after its last ReLU, the addition
  included); ``signal_std_last`` is the last block's.
- **Line correlation** (shattered gradients, after Balduzzi et al. 2017): through each of the
  first few images x0 a line x(t) = x0 + t d, d a random direction of norm |x0|, at ``points``
  values of t evenly spaced over [-span, span] (neighbours 2 span / (points - 1) |x0| apart).
  At every point, the gradient with respect to the input of one fixed scalar of the output,
  f = <w, logits> with w a random Gaussian vector. The correlation of the gradients g_i, g_j at
  points i, j is the scalar product of the mean-removed (over pixels) vectors over their norms
  (Pearson over pixels); averaged over all pairs with the same lag |i - j| and over the lines,
  it gives a curve of correlation against distance (``init_probe_lines.csv``).
  ``line_correlation`` is its value at lag 1 (neighbouring points), ``line_correlation_quarter``
  its mean over lags 1 to a quarter of the line. 1: gradients that change smoothly along the
  line (a linear map gives exactly 1 at every lag); near 0: white-noise-like, "shattered".
  BN is held fixed for this measure, so that every point's gradient is its own: each BN
  layer's running mean and variance are set to the statistics of the probe batch (a
  training-mode forward under no_grad with momentum=None, i.e. exactly that batch's per-channel
  mean and unbiased variance), then the net is put in eval mode, where the points of a line
  are normalised with those fixed numbers and do not interact. Differences from the paper:
  Balduzzi et al. feed a 1-D input to fully connected nets and take the covariance of scalar
  gradients over random initialisations; here the inputs are images, the nets the paper's
  conv nets, the gradient is a vector over pixels and the correlation is taken over pixels,
  for one initialisation at a time (init seeds give the spread), on a line around a real image.
- **Gradient correlation** (``grad_correlation``, the earlier, cruder form kept for
  comparison): the Pearson correlation over pixels between df/dx at x and at x + u,
  |u| = eps |x|, averaged over the images, with BN in training mode (the images of the batch
  share its statistics).
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


def hold_batch_statistics(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BN layer's running mean and variance to the statistics of batch ``x`` (one
    training-mode forward under no_grad with ``momentum=None``), then put ``net`` in eval mode,
    so that each example's output depends on that example alone. Returns ``net``."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, exactly its statistics
    net.train()
    try:
        with torch.no_grad():
            net(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    return net.eval()


def input_gradients(
    net: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, projection: torch.Tensor
) -> torch.Tensor:
    """The gradient of ``<projection, net(x_k)>`` with respect to each input ``x_k``, one
    flattened row per input. Per-example only if ``net`` does not couple its inputs (BN held in
    eval mode, see :func:`hold_batch_statistics`)."""
    inputs = inputs.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((net(inputs) * projection).sum(), inputs)
    return grad.flatten(1)


def line_inputs(
    x0: torch.Tensor, direction: torch.Tensor, points: int = 33, span: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs ``x0 + t * d`` for ``points`` values of ``t`` evenly spaced over
    ``[-span, span]``, ``d`` being ``direction`` rescaled to the norm of ``x0`` (so that ``t``
    is a distance in units of ``|x0|``): (inputs, t)."""
    if points < 2:
        raise ValueError(f"a line needs at least 2 points, got {points}")
    d = direction * (x0.norm() / direction.norm().clamp_min(1e-12))
    t = torch.linspace(-span, span, points, dtype=x0.dtype)
    return x0.unsqueeze(0) + t.view(-1, *[1] * x0.dim()) * d.unsqueeze(0), t


def line_gradients(
    net: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    direction: torch.Tensor,
    projection: torch.Tensor,
    points: int = 33,
    span: float = 0.25,
) -> torch.Tensor:
    """The input gradient of ``<projection, net(x)>`` at each point of the line through ``x0``
    along ``direction`` (:func:`line_inputs`): a (points, pixels) matrix, one row per point."""
    inputs, _ = line_inputs(x0, direction, points, span)
    return input_gradients(net, inputs, projection)


def gradient_correlations(grads: torch.Tensor) -> torch.Tensor:
    """The (points, points) matrix of correlations between rows of ``grads``: the scalar product
    of the mean-removed rows over their norms (Pearson over pixels). A pair of rows without
    spread counts 1 if they are equal (a constant gradient), 0 if not."""
    centred = grads - grads.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    denom = norms[:, None] * norms[None, :]
    corr = (centred @ centred.T) / denom.clamp_min(torch.finfo(grads.dtype).tiny)
    same = torch.isclose(grads[:, None, :], grads[None, :, :], rtol=1e-5, atol=1e-12).all(-1)
    return torch.where(denom > 0, corr, same.to(corr.dtype))


def lag_means(matrix: torch.Tensor) -> torch.Tensor:
    """The mean of each diagonal of a square matrix: entry k averages all pairs (i, i + k)."""
    return torch.stack([matrix.diagonal(k).mean() for k in range(matrix.shape[0])])


def line_correlation(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    points: int = 33,
    span: float = 0.25,
    generator: torch.Generator | None = None,
) -> pd.DataFrame:
    """Correlation of input gradients against distance along lines through the images ``x``
    (one line per image, a random direction each, one random projection of the output for
    all): per lag ``|i - j|`` the correlation averaged over all pairs of points and all lines.
    Columns lag, distance (in units of the image's norm), correlation; lag 0 is 1. ``net`` must
    not couple its inputs: hold BN first (:func:`hold_batch_statistics`)."""
    x = x.detach()
    with torch.no_grad():
        out_shape = net(x[:1]).shape[1:]
    projection = torch.randn(out_shape, generator=generator, dtype=x.dtype)
    directions = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    curves = [
        lag_means(gradient_correlations(line_gradients(net, x0, d, projection, points, span)))
        for x0, d in zip(x, directions, strict=True)
    ]
    step = 2 * span / (points - 1)
    lags = torch.arange(points)
    return pd.DataFrame({
        "lag": lags.numpy(), "distance": (lags * step).numpy(),
        "correlation": torch.stack(curves).mean(0).double().numpy()})  # fmt: skip


def line_summary(curve: pd.DataFrame) -> dict[str, float]:
    """A line curve's summary numbers: the correlation at lag 1 (neighbouring points) and the
    mean over lags 1 to a quarter of the line."""
    quarter = max(1, (len(curve) - 1) // 4)
    by_lag = curve.set_index("lag")["correlation"]
    return {
        "line_correlation": float(by_lag.get(1, math.nan)),
        "line_correlation_quarter": float(by_lag.loc[1:quarter].mean()),
    }


def probe_net(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 0.1,
    seed: int = 0,
    line_images: int = 8,
    points: int = 33,
    span: float = 0.25,
) -> dict:
    """The init-time measures of one net on one batch: gradient norms, signal and the old
    gradient correlation in training mode (no update), then the line measure on the first
    ``line_images`` images with BN held at the batch's statistics (``line`` is its curve)."""
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
    net.zero_grad(set_to_none=True)
    hold_batch_statistics(net, x)
    line = line_correlation(
        net, x[:line_images], points, span, generator=torch.Generator().manual_seed(seed + 2)
    )
    net.train()
    first, last = grads[0], grads[-1]
    ratio = math.log10(first / last) if first > 0 and last > 0 else math.nan
    return {
        "loss": float(loss.detach()),
        "grad_norms": grads,
        "signal_stds": signals,
        "grad_log_ratio": ratio,
        "signal_std_last": signals[-1] if signals else math.nan,
        "grad_correlation": correlation,
        **line_summary(line),
        "line": line,
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
    seeds: Sequence[int] = (0,),
    progress: Callable[[str], None] = print,
    line_images: int = 8,
    points: int = 33,
    span: float = 0.25,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Probe every family x norm x depth x init seed: (one row per net, one row per net and
    layer, one row per net and lag of the line measure)."""
    nets, layers, lines = [], [], []
    combos = [(f, n, d, s) for f in families for n in norms for d in depths for s in seeds]
    start = time.perf_counter()
    for i, (family, norm, depth, seed) in enumerate(combos):
        torch.manual_seed(seed)
        net = cifar_net(depth, family == "resnet", "A", width, x.shape[1], num_classes, norm=norm)
        result = probe_net(net, x, y, eps, seed, line_images, points, span)
        key = {"family": family, "norm": norm, "depth": depth, "seed": seed}
        scalars = {k: v for k, v in result.items() if not isinstance(v, list | pd.DataFrame)}
        nets.append({**key, **scalars})
        for measure in ("grad_norms", "signal_stds"):
            for index, value in enumerate(result[measure], start=1):
                layers.append({**key, "measure": measure[:-1], "layer": index, "value": value})
        lines.append(result["line"].assign(**key))
        progress(
            f"[{i + 1}/{len(combos)}] {family}-{depth} norm={norm} seed={seed}: grad "
            f"log10(first/last) {result['grad_log_ratio']:+.2f}, last signal std "
            f"{result['signal_std_last']:.3g}, gradient correlation "
            f"{result['grad_correlation']:.3f}, line correlation (lag 1) "
            f"{result['line_correlation']:.3f} ({time.perf_counter() - start:.0f} s)"
        )
    line_columns = ["family", "norm", "depth", "seed", "lag", "distance", "correlation"]
    line_frame = (
        pd.concat(lines, ignore_index=True)[line_columns]
        if lines
        else pd.DataFrame(columns=line_columns)
    )
    return pd.DataFrame(nets), pd.DataFrame(layers), line_frame


PANELS = {
    "grad_log_ratio": "gradient norm, log10(first / last layer)\n> 0 exploding toward the input",
    "signal_std_last": "std of the last block's output",
    "line_correlation": "input-gradient correlation of neighbouring\npoints on a line "
    "(1 smooth, 0 shattered)",
}
COLORS, STYLES = {"plain": "tab:red", "resnet": "tab:blue"}, {"batch": "-", "none": "--"}
MEASURES = ["loss", "grad_log_ratio", "signal_std_last", "grad_correlation", "line_correlation",
            "line_correlation_quarter"]  # fmt: skip


def _curves(ax, frame: pd.DataFrame, x: str, y: str, keys: list[str]) -> None:
    """One line per family and norm: the mean over seeds, a band from the lowest to the highest
    seed when there are several."""
    for (family, norm), group in frame.groupby(["family", "norm"], sort=True):
        stats = group.groupby(keys)[y].agg(["mean", "min", "max", "count"]).reset_index()
        color, style = COLORS.get(family), STYLES.get(norm, ":")
        ax.plot(stats[x], stats["mean"], style, marker="o" if x == "depth" else None,
                ms=4, color=color, label=f"{family}, norm={norm}")  # fmt: skip
        if (stats["count"] > 1).any():
            ax.fill_between(stats[x], stats["min"], stats["max"], color=color, alpha=0.15, lw=0)


def figure(nets: pd.DataFrame, lines: pd.DataFrame | None = None) -> Figure:
    """Each measure against depth (mean over init seeds, band: their range), one line per family
    (color) and norm (line style); with ``lines``, a last panel of the line correlation against
    distance for the deepest nets."""
    panels = {k: v for k, v in PANELS.items() if k in nets}
    if "line_correlation" not in nets and "grad_correlation" in nets:  # an older table
        panels["grad_correlation"] = (
            "gradient correlation at nearby inputs\n(1 smooth, 0 shattered)"
        )
    with_lines = lines is not None and not lines.empty
    count = len(panels) + with_lines
    fig = Figure(figsize=(4.2 * count, 3.6))
    axes = list(fig.subplots(1, count))
    for ax, (column, title) in zip(axes, panels.items(), strict=False):
        _curves(ax, nets, "depth", column, ["depth"])
        ax.set_xlabel("depth")
        ax.set_title(title, fontsize=9)
        if column == "signal_std_last":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if with_lines:
        ax = axes[-1]
        deepest = int(lines["depth"].max())
        _curves(ax, lines[lines["depth"] == deepest], "distance", "correlation", ["distance"])
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel("distance along the line (units of |x|)")
        ax.set_title(f"input-gradient correlation against distance\ndepth {deepest}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="gray", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle("At initialisation, before any update", fontsize=10)
    fig.tight_layout()
    return fig


def report_section(nets: pd.DataFrame) -> str:
    """A Markdown table of the per-net measures (mean over init seeds) with what they mean."""
    keys = ["family", "norm", "depth"]
    measures = [m for m in MEASURES if m in nets]
    grouped = nets.groupby(keys, sort=False)
    table = grouped[measures].mean().reset_index()
    if "seed" in nets:
        table.insert(3, "seeds", grouped["seed"].nunique().to_numpy())
    if "line_correlation" in nets and "seeds" in table and table["seeds"].gt(1).any():
        low, high = grouped["line_correlation"].min(), grouped["line_correlation"].max()
        table["line corr. range"] = [f"{a:.3f} to {b:.3f}" for a, b in zip(low, high, strict=True)]
    table = table.rename(columns={
        "grad_log_ratio": "grad log10(first/last)", "signal_std_last": "last signal std",
        "grad_correlation": "grad correlation (old)", "line_correlation": "line corr. lag 1",
        "line_correlation_quarter": "line corr. lags to 1/4"})  # fmt: skip
    return (
        "## At initialisation\n\n"
        + (__doc__ or "").split("\n\n", 1)[1].strip()
        + "\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )


def write(
    nets: pd.DataFrame,
    layers: pd.DataFrame,
    out: Path,
    formats: tuple[str, ...] = ("png", "pdf"),
    lines: pd.DataFrame | None = None,
) -> None:
    """init_probes.csv, init_probe_layers.csv, init_probe_lines.csv (with ``lines``),
    init_probes.{png,pdf}, init_probes.md."""
    tables = {"init_probes": nets, "init_probe_layers": layers}
    if lines is not None:
        tables["init_probe_lines"] = lines
    write_probe(out, "init_probes", tables, figure(nets, lines), report_section(nets), formats)


TITLE = "At initialisation: gradients, signal and shattering by depth"
NEEDS = "init_probes.csv from experiments/probe_init.py (in the output or a --probes directory)"


def section(ctx: Context) -> Section:
    """This probe's table and figure, where its outputs are found."""
    section, _ = probe_section(
        ctx, TITLE, NEEDS, ["init_probes.csv"], "init_probes.png", report_section
    )
    return section
