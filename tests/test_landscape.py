"""Loss landscapes: filter-normalised directions, the Hessian's top eigenvalue on a quadratic,
and the command on a tiny trained sweep."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, TINY, run_train
from degradation.analysis.landscape import (
    filter_normalized_direction,
    surface_1d,
    top_hessian_eigenvalue,
    weight_names,
)
from degradation.models import cifar_net


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
         "images=32", "steps_1d=5", "steps_2d=3", "hessian_iterations=3"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]  # Hydra wrote nothing of its own
    numbers = pd.read_csv(sweep / "landscape.csv")
    assert sorted(numbers["net"]) == ["plain-8 seed 0", "resnet-8 seed 0"]
    assert len(pd.read_csv(sweep / "landscape_2d.csv")) == 2 * 9
    for name in ("landscape.png", "landscape.pdf", "landscape.md", "landscape_1d.csv"):
        assert (sweep / name).is_file()
