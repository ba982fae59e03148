"""Loss landscape of trained nets along filter-normalised random directions (Li et al. 2018).

A direction has one random Gaussian tensor per conv or linear weight, each of its filters (output
unit) rescaled to the norm of the matching filter of the trained weights; BN parameters and biases
get no component, as in Li et al. The loss is the training loss (cross-entropy, BN in eval mode)
on a fixed subset of training images, at ``w + a d1`` (1-D, a in [-1, 1]) and ``w + a d1 + b d2``
(2-D), for ``pairs`` independent pairs of directions (pair 0 is the one plotted).

Convexity as Li et al. map it: at a point, lambda_min and lambda_max are the extreme eigenvalues
of the Hessian of that loss with respect to the conv and linear weights (Lanczos on
Hessian-vector products, on the first images of the subset), and the ratio is
max(0, -lambda_min) / lambda_max: 0 where the loss has no negative curvature, large where it is
strongly non-convex. ratio_center is the ratio at the trained weights; ratio_grid_mean and
ratio_grid_max summarise it over a coarse grid of the plane of pair 0 (landscape_eigs.csv).
Counts over all pairs: minima_2d, local minima of the 2-D surfaces other than their lowest point
(interior grid points lower than their 8 neighbours by more than the tolerance); nonmonotone_1d,
1-D curves (along d1 and along d2 of each pair, ``curves_1d`` in all) that, going out from the
trained weights on either side, fall by more than the tolerance below the highest loss seen
before. The tolerance is a fraction of the loss at the trained weights. top_hessian_eigenvalue
(the largest-magnitude extreme at the weights) and lambda_max describe sharpness, which is not
scale-invariant in BN nets.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def lanczos_extremes(
    matvec: Callable[[np.ndarray], np.ndarray],
    size: int,
    steps: int = 20,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Smallest and largest eigenvalues of the symmetric operator ``matvec`` (float64 vectors of
    ``size``) by ``steps`` Lanczos steps with full reorthogonalisation: the extreme eigenvalues
    of the tridiagonal matrix of the Krylov basis (its Ritz values). They lie inside the
    spectrum and are exact once the basis spans it (``steps >= size``, or an invariant subspace
    reached, after which a fresh random vector orthogonal to the basis goes on)."""
    steps = max(1, min(steps, size))

    def fresh(basis: np.ndarray) -> np.ndarray:
        q = torch.randn(size, generator=generator, dtype=torch.float64).numpy()
        for _ in range(2):
            q -= basis.T @ (basis @ q)
        return q / np.linalg.norm(q)

    basis = np.zeros((steps, size))
    diagonal, off_diagonal = [], []
    q = fresh(basis[:0])
    for j in range(steps):
        basis[j] = q
        w = np.asarray(matvec(q), dtype=np.float64).copy()
        diagonal.append(float(q @ w))
        if j + 1 == steps:
            break
        for _ in range(2):  # full reorthogonalisation, twice, against the whole basis
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        scale = max(abs(v) for v in diagonal + off_diagonal)
        if beta <= 1e-10 * scale or beta == 0.0:  # an invariant subspace: start afresh
            off_diagonal.append(0.0)
            q = fresh(basis[: j + 1])
        else:
            off_diagonal.append(beta)
            q = w / beta
    tridiagonal = np.diag(diagonal) + np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1)
    ritz = np.linalg.eigvalsh(tridiagonal)
    return float(ritz[0]), float(ritz[-1])


def hessian_extremes(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(lambda_min, lambda_max) of the Hessian of ``loss_fn()`` w.r.t. ``params``: Lanczos
    (:func:`lanczos_extremes`, ``iterations`` Hessian-vector products by double backward) on
    float64 vectors, the products in the parameters' dtype."""
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    sizes = [p.numel() for p in params]
    curved = [i for i, g in enumerate(grads) if g.requires_grad]  # others: constant gradient
    if not curved:  # the loss is linear in the parameters
        return 0.0, 0.0

    def hvp(v: np.ndarray) -> np.ndarray:
        chunks = torch.from_numpy(v).split(sizes)
        vectors = [c.view_as(p).to(p.dtype) for c, p in zip(chunks, params, strict=True)]
        products = torch.autograd.grad(
            [grads[i] for i in curved], params, grad_outputs=[vectors[i] for i in curved],
            retain_graph=True, materialize_grads=True,
        )  # fmt: skip
        return torch.cat([h.detach().reshape(-1) for h in products]).double().numpy()

    return lanczos_extremes(hvp, sum(sizes), iterations, generator)


def eigen_ratio(lambda_min: float, lambda_max: float) -> float:
    """Li et al.'s convexity number max(0, -lambda_min) / lambda_max: 0 without negative
    curvature, inf with negative curvature and no positive curvature."""
    if lambda_min >= 0:
        return 0.0
    if lambda_max <= 0:
        return float("inf")
    return -lambda_min / lambda_max


def extremes_at(
    net: nn.Module,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    iterations: int = 20,
    seed: int = 0,
) -> tuple[float, float]:
    """(lambda_min, lambda_max) of the cross-entropy's Hessian w.r.t. the conv and linear
    weights of ``net`` set to ``params`` (the rest fixed, BN in eval mode)."""
    net.eval()
    moved = set(weight_names(net))
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items() if k in moved}
    fixed = {k: v.detach() for k, v in params.items() if k not in moved}

    def loss() -> torch.Tensor:
        return F.cross_entropy(functional_call(net, {**fixed, **leaves}, (x,)), y)

    generator = torch.Generator().manual_seed(seed)
    return hessian_extremes(loss, list(leaves.values()), iterations, generator)


def grid_points(steps: int) -> np.ndarray:
    """``steps`` points from -1 to 1 (one point: the centre alone)."""
    return np.linspace(-1, 1, steps) if steps > 1 else np.zeros(1)


def eigen_grid(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    d1: dict[str, torch.Tensor],
    d2: dict[str, torch.Tensor],
    steps: int = 5,
    iterations: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """lambda_min, lambda_max and their ratio at w + a d1 + b d2 on a ``steps`` x ``steps``
    grid over [-1, 1]^2: one row per point."""
    base = {k: v.detach() for k, v in net.named_parameters()}
    rows = []
    for a in grid_points(steps):
        for b in grid_points(steps):
            params = {k: base[k] + a * d1[k] + b * d2[k] for k in base}
            low, high = extremes_at(net, params, x, y, iterations, seed)
            rows.append({"alpha": a, "beta": b, "lambda_min": low, "lambda_max": high,
                         "ratio": eigen_ratio(low, high)})  # fmt: skip
    return pd.DataFrame(rows)


def nonmonotone(alphas: Sequence[float], losses: Sequence[float], tolerance: float = 1e-3) -> bool:
    """Whether a 1-D curve has a second basin: an interior peak with the loss falling by more
    than ``tolerance`` x |loss at the point nearest 0| on both sides of it (a convex bowl, centred
    or not, and a curve that only falls or only rises: False; two minima along the line: True)."""
    from scipy.signal import find_peaks

    alphas, losses = np.asarray(alphas, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(alphas)
    alphas, losses = alphas[order], losses[order]
    slack = tolerance * abs(losses[int(np.abs(alphas).argmin())])
    peaks, _ = find_peaks(losses, prominence=max(slack, 1e-12))
    return len(peaks) > 0


def local_minima(surface: pd.DataFrame, tolerance: float = 1e-3) -> int:
    """Local minima of a 2-D surface (columns alpha, beta, loss) other than its lowest point:
    interior grid points lower than each of their 8 neighbours by more than ``tolerance`` x
    |loss at the point nearest the centre|."""
    grid = surface.pivot(index="beta", columns="alpha", values="loss").to_numpy(dtype=float)
    center = surface.loc[(surface["alpha"] ** 2 + surface["beta"] ** 2).idxmin(), "loss"]
    slack = tolerance * abs(float(center))
    lowest = np.unravel_index(np.nanargmin(grid), grid.shape)
    count = 0
    for i in range(1, grid.shape[0] - 1):
        for j in range(1, grid.shape[1] - 1):
            around = np.delete(grid[i - 1 : i + 2, j - 1 : j + 2].reshape(-1), 4)
            if (i, j) != lowest and (grid[i, j] < around - slack).all():
                count += 1
    return count


NET_NAME = re.compile(r"^(?P<family>[A-Za-z_]+)-(?P<depth>\d+) seed (?P<seed>\d+)$")


def described(name: str) -> dict[str, object]:
    """``net``, ``family``, ``depth`` and ``seed`` of a net named ``<family>-<depth> seed <s>``
    (None where the name is not of that form)."""
    match = NET_NAME.match(name)
    if match is None:
        return {"net": name, "family": None, "depth": None, "seed": None}
    return {"net": name, "family": match["family"], "depth": int(match["depth"]),
            "seed": int(match["seed"])}  # fmt: skip


@dataclass
class LandscapeStudy:
    """What :func:`study` measures: the 1-D curves and 2-D surfaces of every pair, the
    Hessian's extremes over the grid, the counts per pair, and one row of numbers per net."""

    one: pd.DataFrame
    two: pd.DataFrame
    eigs: pd.DataFrame
    pairs: pd.DataFrame
    numbers: pd.DataFrame


def study(
    nets: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    steps_1d: int = 21,
    steps_2d: int = 11,
    hessian_iterations: int = 15,
    seed: int = 0,
    pairs: int = 3,
    eig_steps: int = 5,
    eig_images: int = 64,
    eig_pairs: int = 1,
    tolerance: float = 1e-3,
    progress: Callable[[str], None] = print,
) -> LandscapeStudy:
    """For each named net and each of ``pairs`` direction pairs: 1-D curves along both
    directions, the 2-D surface and their non-convexity counts; the Hessian's extremes
    (``hessian_iterations`` Lanczos steps, the first ``eig_images`` images) at the weights and,
    for the first ``eig_pairs`` pairs, on an ``eig_steps`` x ``eig_steps`` grid."""
    ones, twos, eigs, counts, numbers = [], [], [], [], []
    xh, yh = x[:eig_images], y[:eig_images]
    for name, net in nets.items():
        net.eval()
        start, who = time.perf_counter(), described(name)
        g = torch.Generator().manual_seed(seed)
        own_eigs = []
        for pair in range(pairs):
            d1 = filter_normalized_direction(net, g)
            d2 = filter_normalized_direction(net, g)
            curves = [surface_1d(net, x, y, d, steps_1d).assign(net=name, pair=pair, direction=k)
                      for k, d in ((1, d1), (2, d2))]  # fmt: skip
            two = surface_2d(net, x, y, d1, d2, steps_2d).assign(net=name, pair=pair)
            counts.append({**who, "pair": pair, "minima_2d": local_minima(two, tolerance),
                           "nonmonotone_1d": sum(nonmonotone(c["alpha"], c["loss"], tolerance)
                                                 for c in curves)})  # fmt: skip
            ones.extend(curves)
            twos.append(two)
            if pair < eig_pairs:
                grid = eigen_grid(net, xh, yh, d1, d2, eig_steps, hessian_iterations, seed + 1)
                own_eigs.append(grid.assign(**who, pair=pair))
        own = pd.concat(own_eigs) if own_eigs else pd.DataFrame()
        at_center = own[(own["alpha"] == 0) & (own["beta"] == 0)] if own_eigs else own
        if len(at_center):
            low, high = (
                float(at_center["lambda_min"].iloc[0]),
                float(at_center["lambda_max"].iloc[0]),
            )
        else:
            base = {k: v.detach() for k, v in net.named_parameters()}
            low, high = extremes_at(net, base, xh, yh, hessian_iterations, seed + 1)
        first = ones[-2 * pairs]  # pair 0, along d1
        mine = pd.DataFrame(counts[-pairs:])
        ratios = own[own["pair"] == 0]["ratio"] if own_eigs else pd.Series(dtype=float)
        numbers.append({
            "net": name,
            "loss_at_solution": float(first.loc[first["alpha"].abs().idxmin(), "loss"]),
            "loss_at_edge_1d": float(first["loss"].iloc[[0, -1]].mean()),
            "top_hessian_eigenvalue": high if abs(high) >= abs(low) else low,
            "lambda_min": low,
            "lambda_max": high,
            "ratio_center": eigen_ratio(low, high),
            "ratio_grid_mean": float(ratios.mean()) if len(ratios) else float("nan"),
            "ratio_grid_max": float(ratios.max()) if len(ratios) else float("nan"),
            "minima_2d": int(mine["minima_2d"].sum()),
            "nonmonotone_1d": int(mine["nonmonotone_1d"].sum()),
            "pairs": pairs,
            "curves_1d": 2 * pairs,
        })  # fmt: skip
        eigs.append(own)
        row, took = numbers[-1], time.perf_counter() - start
        progress(f"{name}: {pairs} pair(s) of directions, ratio at the weights "
                 f"{row['ratio_center']:.3g}, over the grid {row['ratio_grid_mean']:.3g} "
                 f"(mean), {row['minima_2d']} extra 2-D minima, {row['nonmonotone_1d']}/"
                 f"{2 * pairs} non-monotone curves ({took:.0f} s)")  # fmt: skip
    return LandscapeStudy(pd.concat(ones), pd.concat(twos), pd.concat(eigs),
                          pd.DataFrame(counts), pd.DataFrame(numbers))  # fmt: skip


def figure(one: pd.DataFrame, two: pd.DataFrame, eigs: pd.DataFrame | None = None) -> Figure:
    """Top: 1-D curves of pair 0 along d1 (left) and one 2-D contour panel per net with the
    same contour levels. Bottom (with ``eigs``): the ratio of pair 0's grid per net."""
    if "pair" in one:
        one = one[(one["pair"] == 0) & (one["direction"] == 1)]
        two = two[two["pair"] == 0]
    names = sorted(two["net"].unique())
    with_eigs = eigs is not None and not eigs.empty
    rows = 2 if with_eigs else 1
    fig = Figure(figsize=(4.4 * (1 + len(names)), 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, 1 + len(names), squeeze=False)
    for name in names:
        curve = one[one["net"] == name]
        color = "tab:blue" if name.startswith("resnet") else "tab:red"
        axes[0, 0].plot(curve["alpha"], curve["loss"], "o-", ms=3, color=color, label=name)
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("step along a filter-normalised direction")
    axes[0, 0].set_ylabel("training loss")
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].grid(alpha=0.3)
    finite = two["loss"][np.isfinite(two["loss"])]
    levels = np.geomspace(max(finite.min(), 1e-3), max(finite.max(), 1e-2), 15)
    for ax, name in zip(axes[0, 1:], names, strict=True):
        grid = two[two["net"] == name].pivot(index="beta", columns="alpha", values="loss")
        contour = ax.contour(grid.columns, grid.index, grid.values, levels=levels,
                             norm=LogNorm(), cmap="viridis")  # fmt: skip
        ax.plot([0], [0], "k+")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    bar = fig.colorbar(contour, ax=axes[0, 1:], shrink=0.8, label="training loss (same levels)")
    bar.set_ticks(levels[::2], labels=[f"{v:.2g}" for v in levels[::2]])
    if with_eigs:
        ratio_panels(axes[1], eigs[eigs["pair"] == 0], names, fig)
    return fig


def ratio_panels(axes, eigs: pd.DataFrame, names: list[str], fig: Figure) -> None:
    """Mean ratio per net (first axis) and each net's ratio map (the others), one scale."""
    ratios = eigs["ratio"].replace(np.inf, np.nan)
    top = max(float(ratios.max()) if ratios.notna().any() else 0.0, 1e-3)
    means = [float(eigs.loc[eigs["net"] == n, "ratio"].mean()) for n in names]
    axes[0].bar(range(len(names)), means, color="0.5")
    axes[0].set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axes[0].set_ylabel("mean |lambda_min / lambda_max| over the grid")
    for ax, name in zip(axes[1:], names, strict=True):
        grid = eigs[eigs["net"] == name].pivot(index="beta", columns="alpha", values="ratio")
        mesh = ax.pcolormesh(grid.columns, grid.index, grid.values.clip(0, top), vmin=0,
                             vmax=top, cmap="magma", shading="nearest")  # fmt: skip
        ax.plot([0], [0], "w+")
        ax.set_title(f"{name}: max(0, -lambda_min) / lambda_max", fontsize=9)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    fig.colorbar(mesh, ax=axes[1:], shrink=0.8, label="eigenvalue ratio (0: convex)")


def report_section(numbers: pd.DataFrame) -> str:
    """The per-net numbers with what they mean."""
    return (
        "## Loss landscape\n\n" + (__doc__ or "").split("\n\n", 1)[1].strip() + "\n\n"
        + numbers.to_markdown(index=False, floatfmt=".4g") + "\n"
    )  # fmt: skip


def write(result: LandscapeStudy, out: Path, formats: tuple[str, ...] = ("png", "pdf")) -> None:
    """landscape_1d.csv, landscape_2d.csv, landscape_eigs.csv, landscape_pairs.csv,
    landscape.csv, landscape.{png,pdf} and landscape.md in ``out``."""
    tables = {"landscape_1d": result.one, "landscape_2d": result.two,
              "landscape_eigs": result.eigs, "landscape_pairs": result.pairs,
              "landscape": result.numbers}  # fmt: skip
    fig = figure(result.one, result.two, result.eigs)
    text = report_section(result.numbers)
    write_probe(out, "landscape", tables, fig, text, formats, "loss landscape")


TITLE = "Loss landscape of trained nets"
NEEDS = "landscape.csv from experiments/probe_landscape.py"


def section(ctx: Context) -> Section:
    """This probe's table and figure, where its outputs are found."""
    section, _ = probe_section(
        ctx, TITLE, NEEDS, ["landscape.csv"], "landscape.png", report_section
    )
    return section
