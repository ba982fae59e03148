"""Layer responses, gradient norms and their figures and report sections."""

import numpy as np
import pandas as pd
import pytest
import torch
from test_analysis import degraded_sweep, make_run

from conftest import TINY, run_train
from degradation.analysis import gradients, responses
from degradation.analysis.shortcuts import shortcut_table
from degradation.models import cifar_net
from degradation.report import write_analysis
from degradation.results import collect


def test_response_std_on_a_hand_computable_net():
    net = cifar_net(8, residual=True)
    layers = responses.response_layers(net)
    assert [name for name, _ in layers][:3] == ["stem", "stages.0.0.bn1", "stages.0.0.bn2"]
    assert len(layers) == 7  # the 3x3 convs of a depth-8 net: stem + 2 per block x 3 blocks
    expected = []
    for i, (_, bn) in enumerate(layers):
        # Weight 0: each channel outputs its bias everywhere, so the layer's std over all
        # values is the std of the biases across channels (equal counts per channel).
        bias = torch.arange(bn.num_features, dtype=torch.float32) * (i + 1) / 10
        torch.nn.init.zeros_(bn.weight)
        with torch.no_grad():
            bn.bias.copy_(bias)
        expected.append(bias.double().std(unbiased=False).item())
    batches = [torch.randn(5, 3, 32, 32), torch.randn(3, 3, 32, 32)]
    np.testing.assert_allclose(responses.layer_response_std(net, batches), expected, rtol=1e-6)


def test_response_std_matches_direct_computation():
    torch.manual_seed(0)
    net = cifar_net(8, residual=False).eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        direct = net.stem[1](net.stem[0](x)).std(unbiased=False).item()
    stds = responses.layer_response_std(net, [x[:10], x[10:]])
    assert stds[0] == pytest.approx(direct, rel=1e-5)


def test_gradient_logging_does_not_change_training(tmp_path):
    losses, frames = [], []
    for name, override in (
        ("on", "callbacks.gradients.every=5"),
        ("off", "callbacks.gradients=null"),
    ):
        run_dir = tmp_path / name
        result = run_train(
            *TINY,
            "trainer.max_steps=20",
            "eval_every=10",
            "threads=1",
            override,
            f"hydra.run.dir={run_dir}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = pd.read_csv(run_dir / "metrics.csv")
        frames.append(metrics)
        losses.append(metrics.dropna(subset=["train_loss"])["train_loss"].tolist())
    assert losses[0] == losses[1]
    on, off = frames
    columns = gradients.gradient_columns(on)
    assert columns == [f"grad_conv{i}" for i in range(1, 8)]
    assert on.dropna(subset=columns)["step"].tolist() == [0, 5, 10, 15]
    assert (on[columns].dropna() > 0).all().all()
    assert not gradients.gradient_columns(off)


def test_gradient_tables_and_figures():
    rows = []
    for net, depth in (("plain-8", 8), ("plain-32", 32), ("resnet-8", 8), ("resnet-32", 32)):
        for step in (0, 50, 100):
            row = {
                "run": net,
                "net": net,
                "family": net.split("-")[0],
                "depth": depth,
                "seed": 0,
                "step": step,
            }
            row.update({f"grad_conv{i}": 2.0**-i for i in range(1, 5)})
            rows.append(row)
    metrics = pd.DataFrame(rows)
    grads = gradients.gradient_table(metrics)
    assert len(grads) == 4 * 3 * 4 and grads["layer"].max() == 4
    spread = gradients.gradient_spread(grads)
    assert spread["min_over_max"].tolist() == pytest.approx([2.0**-3] * 12)
    assert spread["first_over_last"].tolist() == pytest.approx([8.0] * 12)
    fig = gradients.gradient_profiles(grads)
    assert [ax.get_title() for ax in fig.axes] == ["plain-8", "plain-32", "resnet-8", "resnet-32"]
    assert fig.axes[0].get_yscale() == "log"
    assert len(gradients.gradient_ratios(spread).axes[0].lines) == 4 + 1  # nets + the 1.0 line


def test_analysis_skips_diagnostics_it_cannot_compute(tmp_path):
    runs, metrics = collect(degraded_sweep(tmp_path / "sweep", seeds=(0,)))
    report = write_analysis(runs, metrics, tmp_path / "out")["report"].read_text()
    assert "Fig. 7: needs finished runs with final weights" in report
    assert "no checkpoints/final.ckpt, no weights.pt and no responses.csv" in report
    assert "gradient norms of runs that did not log them" in report
    assert "## Layer responses" not in report and "## Gradient norms" not in report
    assert not (tmp_path / "out" / "fig7.png").exists()


def test_shortcut_table_compares_options(tmp_path):
    make_run(tmp_path, "plain", 20, 0.25)
    for option, err in (("A", 0.20), ("B", 0.19), ("C", 0.18)):
        make_run(tmp_path, "resnet", 20, err, shortcut=option)
    table = shortcut_table(collect(tmp_path)[0])
    assert table["shortcut"].tolist() == ["none (plain)", "A", "B", "C"]
    assert table["train error (%)"].str.split(" ").str[0].astype(float).round().tolist() == [
        25.0,
        20.0,
        19.0,
        18.0,
    ]
    assert shortcut_table(collect(tmp_path / "resnet20A-fashion_mnist-seed0")[0]) is None
