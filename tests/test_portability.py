"""Runs on any CPU: the oneDNN channels-last crash is worked around, precision and memory format
are chosen per machine, and a forced precision reaches every run."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, TINY, run_train
from degradation.models import imagenet_net
from degradation.speed import (
    PRECISION_ENV,
    auto_channels_last,
    auto_precision,
    is_strided_1x1,
    keep_strided_1x1_nchw,
)


def test_strided_1x1_convs_get_nchw_weights_and_the_same_function():
    torch.manual_seed(0)
    reference = imagenet_net(18, residual=True, stem="small", width=4, num_classes=10).eval()
    net = imagenet_net(18, residual=True, stem="small", width=4, num_classes=10).eval()
    net.load_state_dict(reference.state_dict())
    net = net.to(memory_format=torch.channels_last)
    assert keep_strided_1x1_nchw(net) == 3  # the projections of layer2, layer3 and layer4
    assert keep_strided_1x1_nchw(net) == 3  # idempotent: no second hook
    for m in net.modules():
        if is_strided_1x1(m):
            assert m.weight.stride() == (m.weight.shape[1], 1, 1, 1)  # true NCHW strides
            assert len(m._forward_pre_hooks) == 1
        elif isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            assert m.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x.contiguous(memory_format=torch.channels_last)), reference(x)
        )


def test_width4_projection_net_trains_a_step_channels_last_in_fp32(tmp_path):
    """The reported crash: fp32 backward of a channels-last 1x1 stride-2 conv with 4 input
    channels on 56x56 maps (a width-4 net with projections on 112-pixel images). In a
    subprocess, so that a segfault fails this test instead of the whole run."""
    result = run_train(
        "data=synthetic", "data.num_train=16", "data.num_test=8", "data.image_size=112",
        "data.batch_size=8", "data.eval_batch_size=8",
        "model=resnet_imagenet", "model.depth=18", "model.stem=small", "model.width=4",
        "speed.channels_last=true", "trainer.precision=32-true", "trainer.max_steps=2",
        "eval_every=2", "callbacks.progress.refresh_rate=0", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2
    assert summary["precision"] == "32-true"


# The reported crash, reached on the default path: fp32 forced (the default on CPUs without
# AMX), a width-4 ResNet-18 with projections on 56-pixel images.
SECTION_1 = [
    "data=synthetic", "data.batch_size=8", "data.num_train=64", "data.num_test=16",
    "data.image_size=56", "model=resnet_imagenet", "model.depth=18", "model.stem=small",
    "model.width=4", "trainer.max_steps=2", "eval_every=2", "trainer.precision=32-true",
    "callbacks.progress.refresh_rate=0",
]  # fmt: skip


@pytest.mark.parametrize("channels_last", ["auto", "false", "true"])
def test_the_reported_command_trains_in_fp32_with_every_layout_choice(tmp_path, channels_last):
    result = run_train(
        *SECTION_1, f"speed.channels_last={channels_last}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]  # a crash would be -11 / -6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2


@pytest.mark.parametrize(
    "choice, precision, channels_last",
    [("auto", "32-true", False), ("false", "32-true", False), ("true", "32-true", True),
     ("auto", "bf16-mixed", True), ("false", "bf16-mixed", False)],
)  # fmt: skip
def test_the_net_gets_its_input_in_the_layout_speed_chose(
    tmp_path, monkeypatch, choice, precision, channels_last
):
    """Every batch the net sees (training, augmented by the batched crop, and evaluation) is in
    the memory format that ``speed.channels_last`` settled on, whatever layout the data came in."""
    from hydra import compose, initialize_config_dir

    from degradation.runs import build
    from degradation.speed import apply_speed_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    overrides = [
        *(o for o in TINY if not o.startswith("callbacks.progress")), "~callbacks.progress",
        "trainer.max_steps=3", "eval_every=2", f"speed.channels_last={choice}",
        f"trainer.precision={precision}", "data.in_channels=3", "~callbacks.checkpoint",
        f"trainer.default_root_dir={tmp_path}", f"logger.metrics.save_dir={tmp_path}",
        "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    apply_speed_settings(cfg)
    assert cfg.speed.channels_last is channels_last
    setup = build(cfg, tmp_path)
    layouts = []

    def record(module, args):
        (x,) = args
        layouts.append(
            (module.training, x.is_contiguous(memory_format=torch.channels_last), x.is_contiguous())
        )

    setup.net.register_forward_pre_hook(record)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    assert {training for training, *_ in layouts} == {True, False}  # training and evaluation
    for _, is_channels_last, is_nchw in layouts:
        assert (is_channels_last, is_nchw) == (channels_last, not channels_last)


def test_precision_can_be_forced_for_every_run_by_the_environment(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "32-true")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert auto_precision("auto") == "32-true"
    monkeypatch.delenv(PRECISION_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_precision("auto") == "bf16-mixed"


@pytest.mark.parametrize(
    "cuda, precision, expected",
    [(False, "32-true", False), (False, "bf16-mixed", True), (True, "32-true", True)],
)
def test_channels_last_auto_only_where_it_pays(monkeypatch, cuda, precision, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert auto_channels_last("auto", precision) is expected
