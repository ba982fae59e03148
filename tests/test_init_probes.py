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
from degradation.analysis.init_probes import gradient_correlation, probe_net, run_probes
from degradation.models import cifar_net, count_parameters, imagenet_net


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
    nets, layers = run_probes(x, y, [8], ["plain", "resnet"], ["batch", "none"], width=4,
                              progress=lambda _: None)  # fmt: skip
    assert len(nets) == 4 and set(layers["measure"]) == {"grad_norm", "signal_std"}
    assert nets[["grad_log_ratio", "signal_std_last", "grad_correlation"]].notna().all().all()


def test_probe_command_writes_tables_and_figures(tmp_path):
    out = tmp_path / "probes"
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_init.py"), "data=synthetic",
         "data.image_size=16", "depths=[8,14]", "width=4", "num_images=16",
         f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    nets = pd.read_csv(out / "init_probes.csv")
    assert len(nets) == 8 and sorted(set(nets["depth"])) == [8, 14]
    for name in ("init_probes.png", "init_probes.pdf", "init_probes.md", "init_probe_layers.csv"):
        assert (out / name).is_file()
    assert "[8/8]" in result.stderr  # progress as it goes
    bad = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_init.py"), "depths=[9]",
         f"hydra.run.dir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "depth must be 6n+2" in bad.stdout + bad.stderr
