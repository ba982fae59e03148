"""Lesion study: deleted blocks on hand-checkable cases, and the command on a tiny trained run
re-run from its exported weights alone."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import torch

from conftest import ROOT, TINY, run_train
from degradation.analysis.lesions import (
    Deleted,
    blocks_of,
    keeps_shape,
    lesioned,
    random_deletions,
    single_deletions,
)
from degradation.models import cifar_net


def test_deleting_a_residual_block_whose_branch_outputs_zero_changes_nothing():
    torch.manual_seed(0)
    net = cifar_net(14, residual=True, width=4, in_channels=1).eval()
    x = torch.randn(3, 1, 12, 12)
    for position in (1, 2, 3):  # a shape-keeping, a downsampling and another block
        _, _, block = blocks_of(net)[position]
        torch.nn.init.zeros_(block.bn2.weight)  # the branch's last BN outputs 0
        torch.nn.init.zeros_(block.bn2.bias)
        with torch.no_grad():
            torch.testing.assert_close(lesioned(net, [position])(x), net(x))
    with torch.no_grad():  # an ordinary block does change the output when deleted
        assert not torch.allclose(lesioned(net, [0])(x), net(x))


def test_plain_blocks_become_identity_or_option_a_map():
    net = cifar_net(14, residual=False, width=4, in_channels=1)
    kinds = [keeps_shape(b) for _, _, b in blocks_of(net)]
    assert kinds == [True, True, False, True, False, True]  # first of stages 2, 3 downsample
    x = torch.rand(2, 4, 8, 8)  # non-negative, as a block's input is after a ReLU
    torch.testing.assert_close(Deleted(blocks_of(net)[0][2])(x), x)
    down = Deleted(blocks_of(net)[2][2])(x)
    assert down.shape == (2, 8, 4, 4)
    torch.testing.assert_close(down[:, :4], x[:, :, ::2, ::2])
    assert (down[:, 4:] == 0).all()


def test_tables_have_every_block_and_random_sets_only_shape_keeping_ones():
    torch.manual_seed(0)
    net = cifar_net(20, residual=True, width=4, in_channels=1).eval()
    images, labels = torch.randn(32, 1, 12, 12), torch.randint(0, 10, (32,))
    single = single_deletions(net, images, labels)
    assert single["block"].tolist() == list(range(10)) and single["downsampling"].sum() == 2
    random = random_deletions(net, images, labels, max_k=3, draws=2)
    assert random["k"].tolist() == [1, 1, 2, 2, 3, 3]
    keeping = {i for i, (_, _, b) in enumerate(blocks_of(net)) if keeps_shape(b)}
    assert all(
        set(d) <= keeping and len(set(d)) == k
        for d, k in zip(random["deleted"], random["k"], strict=True)
    )


def test_lesion_command_reruns_from_exported_weights(tmp_path):
    sweep = tmp_path / "sweep"
    trained = run_train("-m", *TINY, "model=plain,resnet", "trainer.max_steps=4", "eval_every=4",
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    command = [sys.executable, str(ROOT / "experiments" / "probe_lesions.py"), f"dirs=[{sweep}]",
               "max_images=64", "max_k=2", "draws=2"]  # fmt: skip
    first = subprocess.run([*command, "export_weights=true"], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]  # Hydra wrote nothing of its own
    table = pd.read_csv(sweep / "lesions_single.csv")
    for path in sweep.glob("*/checkpoints"):  # as in results/: weights only
        shutil.rmtree(path)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "lesions_single.csv"), table)
    for name in ("lesions.png", "lesions.pdf", "lesions.md", "lesions_random.csv"):
        assert (sweep / name).is_file()


def test_lesion_command_refuses_a_bad_value_in_one_line(tmp_path):
    bad = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "probe_lesions.py"), f"dirs=[{tmp_path}]",
         "max_k=0"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "max_k=0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert list(tmp_path.iterdir()) == []
