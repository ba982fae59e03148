"""The ImageNet family: torchvision equivalence, plain twins, Table 1 numbers, image folders, and
a short training through the entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from conftest import run_train
from degradation.analysis.responses import response_layers
from degradation.data import IMAGENET_MEAN, DataUnavailableError, ImageFolderDataModule
from degradation.models import (
    check_imagenet_depth,
    count_parameters,
    imagenet_net,
    multiply_adds,
)
from degradation.paper import TABLE1_FLOPS

DEPTHS = [18, 34, 50, 101, 152]


@pytest.mark.parametrize("depth", DEPTHS)
def test_residual_nets_compute_torchvisions_function_with_its_weights(depth):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    # Non-trivial BN statistics, so that every BN layer matters in eval mode.
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.1, 0.5)
            m.bias.data.uniform_(-0.1, 0.1)
    ours = imagenet_net(depth, residual=True, stem="imagenet")
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert count_parameters(ours) == count_parameters(reference)


@pytest.mark.parametrize("depth", DEPTHS)
def test_plain_twin_has_the_same_layers_minus_shortcuts_and_projections(depth):
    residual = imagenet_net(depth, residual=True).state_dict()
    plain = imagenet_net(depth, residual=False).state_dict()
    projections = {k for k in residual if ".downsample." in k}
    assert projections  # every depth has projections where the shape changes
    assert set(plain) == set(residual) - projections
    assert all(plain[k].shape == residual[k].shape for k in plain)
    x = torch.randn(1, 3, 64, 64)
    net = imagenet_net(depth, residual=False).eval()
    with torch.no_grad():
        assert net(x).shape == (1, 1000)


@pytest.mark.parametrize("depth", DEPTHS)
def test_multiply_adds_match_table1_and_params_match_torchvision(depth):
    paper_variant = imagenet_net(depth, residual=True, stride_in_1x1=True)
    gmacs = multiply_adds(paper_variant) / 1e9
    # Table 1 gives one decimal: within one unit of its last digit.
    assert abs(gmacs - TABLE1_FLOPS[depth]) < 0.1, gmacs
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert count_parameters(imagenet_net(depth, residual=True)) == count_parameters(reference)


def test_small_stem_keeps_small_images_whole_and_depths_are_checked():
    net = imagenet_net(18, residual=True, stem="small", width=8, in_channels=1, num_classes=10)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(net.maxpool, torch.nn.Identity) and net.conv1.kernel_size == (3, 3)
    for bad in (20, 0, 35, True):
        with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
            check_imagenet_depth(bad)
    with pytest.raises(ValueError, match="stem"):
        imagenet_net(18, residual=True, stem="tiny")


def test_response_layers_are_the_3x3_layers():
    basic = imagenet_net(18, residual=False, stem="small", width=4)
    assert len(response_layers(basic)) == 1 + 2 * 8  # stem + two 3x3 per block
    bottleneck = imagenet_net(50, residual=True, stem="small", width=4)
    assert len(response_layers(bottleneck)) == 1 + 16  # stem + one 3x3 per block


def write_folder_tree(root, classes=("cat", "dog", "eel"), per_class=(6, 3), size=(40, 48)):
    """A tiny ImageFolder tree of random PNG images: root/{train,val}/<class>/*.png."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class, strict=True):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_module_reads_a_tiny_tree(tmp_path):
    write_folder_tree(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), image_size=32, resize=36, batch_size=4,
                               eval_batch_size=5, num_workers=0)  # fmt: skip
    dm.setup("fit")
    assert dm.num_classes == 3 and len(dm.train_set) == 18 and len(dm.eval_sets["test"]) == 9
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1, 2}
    batches = list(dm.val_dataloader()[0])
    assert sum(len(b[1]) for b in batches) == 9  # the whole test set, in order
    assert [int(v) for b in batches for v in b[1]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # Normalised with ImageNet's statistics: uniform random pixels have mean about (0.5-m)/s.
    channel_means = torch.cat([b[0] for b in batches]).mean(dim=(0, 2, 3))
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor((0.229, 0.224, 0.225))
    torch.testing.assert_close(channel_means, expected, atol=0.05, rtol=0)
    # Test images: resize the shorter side to 36, then the central 32x32 crop (deterministic).
    again = torch.cat([b[0] for b in dm.val_dataloader()[0]])
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), again)


def test_image_folder_module_explains_a_missing_tree(tmp_path):
    dm = ImageFolderDataModule(str(tmp_path / "nothing"), num_workers=0)
    with pytest.raises(DataUnavailableError, match="class folders"):
        dm.setup("fit")


def test_short_training_through_the_entry_point_on_an_image_folder(tmp_path):
    write_folder_tree(tmp_path / "images", per_class=(16, 4))
    run_dir = tmp_path / "run"
    result = run_train(
        "data=imagenet", f"data.data_dir={tmp_path / 'images'}", "data.image_size=32",
        "data.resize=36", "data.batch_size=8", "data.eval_batch_size=6", "data.num_workers=0",
        "model=resnet_imagenet", "model.depth=18", "model.stem=small", "model.width=4",
        "trainer.max_steps=6", "eval_every=3", "callbacks.progress.refresh_rate=0",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert summary["model"] == "resnet-18" and summary["data"] == "imagenet"
    assert summary["stem"] == "small" and summary["shortcut"] == "B"


def test_imagenet_family_depth_is_refused_clearly(tmp_path):
    result = run_train("data=synthetic", "model=plain_imagenet", "model.depth=20",
                       f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 2
    assert "model.depth: depth must be one of 18, 34, 50, 101, 152" in result.stderr
