"""Normalization as an axis (model.norm) and the init-time probes, on hand-checkable cases."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import ROOT, TINY, run_train
from degradation.analysis.init_probes import (
    gradient_correlation,
    gradient_correlations,
    hold_batch_statistics,
    input_gradients,
    lag_means,
    line_correlation,
    line_inputs,
    probe_net,
    run_probes,
)
from degradation.models import cifar_net, count_parameters, imagenet_net


@pytest.fixture(autouse=True)
def one_thread():
    """The probes on one thread (fast and steady on a shared CPU), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("build", [
    lambda norm: cifar_net(14, residual=True, shortcut="B", width=4, norm=norm),
    lambda norm: imagenet_net(18, residual=True, stem="small", width=4, norm=norm),
    lambda norm: imagenet_net(50, residual=True, stem="small", width=4, norm=norm),
])  # fmt: skip
def test_norm_none_has_no_batchnorm_and_biased_convs(build):
    with_bn, without = build("batch"), build("none")
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in without.modules())
    convs = [m for m in without.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None and (c.bias == 0).all() for c in convs)
    bn_params = sum(m.weight.numel() + m.bias.numel() for m in with_bn.modules()
                    if isinstance(m, nn.BatchNorm2d))  # fmt: skip
    conv_biases = sum(c.bias.numel() for c in convs)
    assert count_parameters(without) == count_parameters(with_bn) - bn_params + conv_biases
    with pytest.raises(ValueError, match="norm must be one of batch, none"):
        cifar_net(8, residual=False, norm="layer")


def test_norm_none_trains_a_step_through_the_entry_point(tmp_path):
    result = run_train(*TINY, "model.norm=none", "trainer.max_steps=2", "eval_every=2",
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert run_dir.name.startswith("plain8-nonorm-w8-synthetic-seed0-")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["normalization"] == "none"


def test_gradient_correlation_is_one_for_identity_and_linear_maps():
    x = torch.randn(4, 1, 8, 8)
    identity = nn.Sequential(nn.Identity(), nn.Identity())
    assert gradient_correlation(identity, x) == pytest.approx(1.0, abs=1e-6)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    assert gradient_correlation(linear, x) == pytest.approx(1.0, abs=1e-6)
    # A deep ReLU net's input gradient changes between nearby inputs: below 1.
    torch.manual_seed(0)
    deep = cifar_net(32, residual=False, width=8, in_channels=1)
    assert gradient_correlation(deep, x) < 0.9


def test_probe_measures_every_layer_in_forward_order():
    torch.manual_seed(0)
    net = cifar_net(14, residual=False, width=4, in_channels=1)
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 10, (8,))
    result = probe_net(net, x, y)
    assert len(result["grad_norms"]) == 13  # stem + 2 per block: depth - 1 3x3 convs
    assert len(result["signal_stds"]) == 6  # one per block
    first, last = result["grad_norms"][0], result["grad_norms"][-1]
    assert result["grad_log_ratio"] == pytest.approx(torch.tensor(first / last).log10().item())
    nets, layers, lines = run_probes(x, y, [8], ["plain", "resnet"], ["batch", "none"], width=4,
                                     seeds=[0, 1], progress=lambda _: None, line_images=2,
                                     points=5)  # fmt: skip
    assert len(nets) == 8 and set(layers["measure"]) == {"grad_norm", "signal_std"}
    assert sorted(set(nets["seed"])) == [0, 1] and sorted(set(layers["seed"])) == [0, 1]
    columns = ["grad_log_ratio", "signal_std_last", "grad_correlation", "line_correlation"]
    assert nets[columns].notna().all().all()
    assert list(lines.columns) == ["family", "norm", "depth", "seed", "lag", "distance",
                                   "correlation"]  # fmt: skip
    assert len(lines) == 8 * 5
    assert lines[lines["lag"] == 0]["correlation"].to_numpy() == pytest.approx([1.0] * 8)
    lag1 = lines[lines["lag"] == 1].set_index(["family", "norm", "seed"])["correlation"]
    summary = nets.set_index(["family", "norm", "seed"])["line_correlation"]
    assert summary.sort_index().to_numpy() == pytest.approx(lag1.sort_index().to_numpy())
    assert lines["distance"].max() == pytest.approx(0.5)  # 4 steps of 2 * 0.25 / 4
    # seeds differ (different inits), and one seed gives the same numbers twice
    by_seed = nets.set_index(["family", "norm", "seed"])["line_correlation"]
    assert by_seed.xs(0, level="seed").ne(by_seed.xs(1, level="seed")).all()
    again, _, _ = run_probes(x, y, [8], ["plain"], ["batch"], width=4, seeds=[1],
                             progress=lambda _: None, line_images=2, points=5)  # fmt: skip
    assert again["line_correlation"][0] == by_seed[("plain", "batch", 1)]


def test_line_inputs_are_evenly_spaced_along_a_direction_of_the_images_norm():
    x0, direction = torch.randn(1, 4, 4), torch.randn(1, 4, 4)
    inputs, t = line_inputs(x0, direction, points=5, span=0.5)
    assert t.tolist() == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
    assert torch.equal(inputs[2], x0)
    steps = (inputs[1:] - inputs[:-1]).flatten(1).norm(dim=1)
    assert steps == pytest.approx(torch.full((4,), 0.25 * float(x0.norm())), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 points"):
        line_inputs(x0, direction, points=1)


def test_lag_means_average_each_diagonal():
    matrix = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]])
    assert lag_means(matrix).tolist() == pytest.approx([1.0, 0.4, 0.1])
    grads = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 4.0, 6.0]])
    # Pearson over pixels: reversed -1, a multiple +1
    assert gradient_correlations(grads)[0].tolist() == pytest.approx([1.0, -1.0, 1.0])


def test_line_correlation_of_a_linear_net_is_one_at_every_lag():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    curve = line_correlation(linear, torch.randn(3, 1, 8, 8), points=9, span=0.5)
    assert curve["lag"].tolist() == list(range(9))
    assert curve["distance"].tolist() == pytest.approx([k * 0.125 for k in range(9)])
    assert curve["correlation"].to_numpy() == pytest.approx([1.0] * 9, abs=1e-6)


def test_line_gradients_are_per_example_with_bn_held_in_eval_mode():
    torch.manual_seed(0)
    net = cifar_net(8, residual=True, width=4, in_channels=1)
    batch = torch.randn(16, 1, 8, 8)
    hold_batch_statistics(net, batch)
    assert not net.training
    bn = net.stem[1]
    assert torch.allclose(bn.running_mean, net.stem[0](batch).mean(dim=(0, 2, 3)), atol=1e-6)
    assert bn.momentum == 0.1  # restored after the calibration
    inputs, projection = torch.randn(5, 1, 8, 8), torch.randn(10)
    alone = input_gradients(net, inputs[:1], projection)[0]
    others = torch.cat([inputs[:1], 10 * torch.randn(4, 1, 8, 8)])
    assert torch.allclose(input_gradients(net, inputs, projection)[0], alone, atol=1e-6)
    assert torch.allclose(input_gradients(net, others, projection)[0], alone, atol=1e-6)
    # the check can fail: in training mode BN couples the points
    net.train()
    coupled = input_gradients(net, others, projection)[0]
    assert not torch.allclose(coupled, input_gradients(net, inputs, projection)[0], atol=1e-4)


def test_gradients_shatter_with_depth_in_plain_nets_much_less_in_residual_nets():
    lag1 = {}
    for family, depth in (("plain", 8), ("plain", 56), ("resnet", 56)):
        values = []
        for seed in (0, 1):
            x = torch.randn(16, 1, 12, 12, generator=torch.Generator().manual_seed(100 + seed))
            torch.manual_seed(seed)
            net = cifar_net(depth, family == "resnet", width=4, in_channels=1)
            hold_batch_statistics(net, x)
            curve = line_correlation(net, x[:2], 17, 0.125, torch.Generator().manual_seed(seed))
            values.append(float(curve["correlation"][1]))
        lag1[family, depth] = sum(values) / len(values)
    assert lag1["plain", 8] > lag1["plain", 56] + 0.5  # shattered with depth
    assert lag1["resnet", 56] > lag1["plain", 56] + 0.3  # shortcuts keep them correlated


def test_probe_command_writes_tables_and_figures(tmp_path):
    out = tmp_path / "probes"
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_init.py"), "data=synthetic",
         "data.image_size=16", "depths=[8,14]", "width=4", "num_images=16", "seed=3",
         "line.images=2", "line.points=5", "threads=1", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    nets = pd.read_csv(out / "init_probes.csv")
    assert len(nets) == 8 and sorted(set(nets["depth"])) == [8, 14] and set(nets["seed"]) == {3}
    lines = pd.read_csv(out / "init_probe_lines.csv")
    assert len(lines) == 8 * 5 and set(lines["seed"]) == {3}
    for name in ("init_probes.png", "init_probes.pdf", "init_probes.md", "init_probe_layers.csv"):
        assert (out / name).is_file()
    assert "[8/8]" in result.stderr  # progress as it goes
    assert "line corr. lag 1" in (out / "init_probes.md").read_text()
    bad = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_init.py"), "depths=[9]",
         f"hydra.run.dir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "depth must be 6n+2" in bad.stdout + bad.stderr
