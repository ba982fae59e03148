"""Loss landscapes: filter-normalised directions, the Hessian's extremes and Li et al.'s
eigenvalue ratio on quadratics (through the same Hessian-vector products as a net) and against
a dense Hessian, the non-convexity counts, the grid, and the command on a tiny trained sweep."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import ROOT, TINY, run_train
from degradation.analysis.landscape import (
    eigen_grid,
    eigen_ratio,
    extremes_at,
    filter_normalized_direction,
    hessian_extremes,
    local_minima,
    nonmonotone,
    surface_1d,
    top_hessian_eigenvalue,
    weight_names,
)
from degradation.models import cifar_net


class Quadratic(nn.Module):
    """f(x, y) = a x^2 + b y^2, with x and y its two parameters: Hessian diag(2a, 2b)."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b
        self.x = nn.Parameter(torch.tensor(0.3))
        self.y = nn.Parameter(torch.tensor(-0.7))

    def forward(self) -> torch.Tensor:
        return self.a * self.x**2 + self.b * self.y**2


def extremes_of(f: nn.Module, iterations: int = 2) -> tuple[float, float]:
    return hessian_extremes(f, list(f.parameters()), iterations,
                            torch.Generator().manual_seed(0))  # fmt: skip


def test_a_convex_quadratic_has_ratio_0():
    low, high = extremes_of(Quadratic(1.0, 2.0))  # Hessian diag(2, 4)
    assert (low, high) == pytest.approx((2.0, 4.0), rel=1e-6)
    assert eigen_ratio(low, high) == 0.0


def test_the_saddle_x2_minus_half_y2_has_ratio_one_half():
    low, high = extremes_of(Quadratic(1.0, -0.5))  # Hessian diag(2, -1)
    assert (low, high) == pytest.approx((-1.0, 2.0), rel=1e-6)
    assert eigen_ratio(low, high) == pytest.approx(0.5, rel=1e-6)
    assert extremes_of(Quadratic(1.0, -0.5), iterations=10) == pytest.approx((low, high))


def test_eigen_ratio_by_hand():
    assert eigen_ratio(0.0, 3.0) == 0.0  # no negative curvature
    assert eigen_ratio(-1.0, 4.0) == 0.25
    assert eigen_ratio(-1.0, -0.5) == float("inf")  # no positive curvature


def test_hessian_extremes_of_a_small_net_match_its_dense_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    names = weight_names(net)  # the two linear weights: 20 + 15 numbers
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(*weights):
        moved = dict(params, **dict(zip(names, weights, strict=True)))
        return F.cross_entropy(torch.func.functional_call(net, moved, (x,)), y)

    blocks = torch.autograd.functional.hessian(loss, tuple(params[k] for k in names))
    sizes = [params[k].numel() for k in names]
    dense = torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j])
                                  for j in range(2)], 1) for i in range(2)])  # fmt: skip
    expected = np.linalg.eigvalsh(dense.numpy())
    assert expected[0] < 0 < expected[-1]  # a saddle: both ends matter
    low, high = extremes_at(net, params, x, y, iterations=sum(sizes))  # a full Krylov basis
    assert (low, high) == pytest.approx((expected[0], expected[-1]), rel=1e-8)
    low, high = extremes_at(net, params, x, y, iterations=12)  # Ritz values lie inside
    assert expected[0] - 1e-12 <= low < 0 < high <= expected[-1] + 1e-12


def test_each_filter_of_a_direction_has_the_norm_of_the_weight_filter():
    torch.manual_seed(0)
    net = cifar_net(14, residual=True, shortcut="B", width=4, in_channels=1)
    direction = filter_normalized_direction(net, torch.Generator().manual_seed(1))
    moved = set(weight_names(net))
    assert moved and all(n.endswith("weight") for n in moved)
    for name, p in net.named_parameters():
        d = direction[name]
        if name in moved:  # conv and linear weights: per output filter
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.flatten(1).norm(dim=1))
            assert not torch.allclose(d, p)
        else:  # BN parameters and biases: left out, as in Li et al.
            assert (d == 0).all()


def test_top_hessian_eigenvalue_of_a_quadratic():
    a = torch.diag(torch.tensor([1.0, 5.0, 2.0]))
    p = torch.ones(3, requires_grad=True)
    top = top_hessian_eigenvalue(lambda: 0.5 * p @ a @ p, [p], iterations=50,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert top == pytest.approx(5.0, rel=1e-4)


def test_two_minima_along_a_line_are_non_monotone_and_a_bowl_is_not():
    a = np.linspace(-1, 1, 21)
    assert not nonmonotone(a, 1 + a**2)  # a convex bowl at the weights
    zigzag = np.arange(21) % 2  # up, down, up, ... by the amplitude
    assert not nonmonotone(a, 1 + 0.0004 * zigzag)  # falls of 0.0004 < tolerance 0.001 x 1
    assert nonmonotone(a, 1 + 0.004 * zigzag)  # falls of 0.004: counted
    assert nonmonotone(a, 1 + (a * (a - 0.7)) ** 2)  # a second minimum at a = 0.7
    assert nonmonotone(a, 1 + (a * (a + 0.7)) ** 2)  # ... or on the other side
    assert nonmonotone(a[::-1], 1 + (a[::-1] * (a[::-1] - 0.7)) ** 2)  # in any order
    # the weights off the bottom of a bowl, or on a slope: one basin, not non-convex
    assert not nonmonotone(a, 1 + (a - 0.3) ** 2)
    assert not nonmonotone(a, 1 - 0.1 * a)


def test_local_minima_other_than_the_lowest_point():
    g = np.linspace(-1, 1, 7)
    a, b = (v.ravel() for v in np.meshgrid(g, g))

    def surface(loss):
        return pd.DataFrame({"alpha": a, "beta": b, "loss": loss})

    assert local_minima(surface(1 + a**2 + b**2)) == 0  # a convex bowl: its minimum alone
    two = 1 + np.minimum((a - 0.0) ** 2 + b**2, (a - 0.66) ** 2 + b**2 + 0.1)
    assert local_minima(surface(two)) == 1  # a second basin, at (0.67, 0)
    assert local_minima(surface(1 + a + b)) == 0  # a slope: no interior minimum


def test_the_eigen_grid_has_one_finite_row_per_point_on_a_tiny_net():
    torch.manual_seed(0)
    net = cifar_net(8, residual=True, width=4, in_channels=1).eval()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    g = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(net, g), filter_normalized_direction(net, g)
    grid = eigen_grid(net, x, y, d1, d2, steps=3, iterations=4)
    assert len(grid) == 9
    assert sorted(set(grid["alpha"])) == sorted(set(grid["beta"])) == [-1.0, 0.0, 1.0]
    values = grid[["lambda_min", "lambda_max", "ratio"]].to_numpy()
    assert np.isfinite(values).all() and (grid["lambda_min"] <= grid["lambda_max"]).all()
    assert (grid["ratio"] >= 0).all()


def test_surface_passes_through_the_trained_weights():
    torch.manual_seed(0)
    net = cifar_net(8, residual=False, width=4, in_channels=1).eval()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    direction = filter_normalized_direction(net)
    curve = surface_1d(net, x, y, direction, steps=5)
    assert curve["alpha"].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    with torch.no_grad():
        expected = float(F.cross_entropy(net(x), y))
    assert curve.loc[2, "loss"] == pytest.approx(expected, rel=1e-5)
    assert curve["loss"].nunique() == 5  # the direction moves the loss


def test_landscape_command_on_a_tiny_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    trained = run_train("-m", *TINY, "model=plain,resnet", "trainer.max_steps=4", "eval_every=4",
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_landscape.py"), f"dirs=[{sweep}]",
         "images=32", "steps_1d=5", "steps_2d=3", "hessian_iterations=3", "pairs=2",
         "eig_steps=3", "eig_images=16"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]  # Hydra wrote nothing of its own
    numbers = pd.read_csv(sweep / "landscape.csv")
    assert sorted(numbers["net"]) == ["plain-8 seed 0", "resnet-8 seed 0"]
    assert len(pd.read_csv(sweep / "landscape_2d.csv")) == 2 * 2 * 9  # nets x pairs x grid
    eigs = pd.read_csv(sweep / "landscape_eigs.csv")
    assert len(eigs) == 2 * 9 and set(eigs["family"]) == {"plain", "resnet"}
    assert np.isfinite(eigs[["lambda_min", "lambda_max", "ratio"]].to_numpy()).all()
    assert len(pd.read_csv(sweep / "landscape_pairs.csv")) == 2 * 2
    for column in (
        "top_hessian_eigenvalue",
        "loss_at_edge_1d",
        "ratio_center",
        "ratio_grid_mean",
        "lambda_max",
        "minima_2d",
        "nonmonotone_1d",
    ):
        assert numbers[column].notna().all(), column  # fmt: skip
    for name in ("landscape.png", "landscape.pdf", "landscape.md", "landscape_1d.csv"):
        assert (sweep / name).is_file()
