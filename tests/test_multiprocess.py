"""Multi-process (DDP) training on the CPU: each process takes its share of every global batch,
the numbers match a single process with the same global batch, the books are kept once, resume
works, and SyncBatchNorm is an option. Two gloo processes through the real entry point."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import TINY, run_train
from degradation.data import DeviceBatches
from degradation.rundirs import write_summary

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
ARGS = [*TINY, "eval_every=6", "threads=1", "trainer.accelerator=cpu"]


def test_process_shares_make_up_the_single_process_stream():
    images = torch.arange(10).view(10, 1, 1, 1).to(torch.uint8)
    labels = torch.arange(10)
    kwargs = dict(batch_size=4, shuffle=True, seed=5, augment=True)
    single = list(DeviceBatches(images, labels, **kwargs))
    shares = [list(DeviceBatches(images, labels, **kwargs, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(single) == 3  # same steps in every process
    for whole, part0, part1 in zip(single, *shares, strict=True):
        for k in range(3):  # images, labels, augmentation draws
            torch.testing.assert_close(torch.cat([part0[k], part1[k]]), whole[k])
    # A last global batch too small to share is topped up from the start of the epoch's order.
    tiny = [list(DeviceBatches(images[:5], labels[:5], batch_size=4, num_replicas=4, rank=r))
            for r in range(4)]  # fmt: skip
    assert all(len(t[-1][1]) == 1 for t in tiny)
    with pytest.raises(ValueError, match="cannot be shared evenly"):
        DeviceBatches(images, labels, batch_size=5, num_replicas=2, rank=0)


def metrics_of(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    single, ddp, synced = tmp_path / "single", tmp_path / "ddp", tmp_path / "syncbn"
    result = run_train(*ARGS, "trainer.max_steps=12", f"hydra.run.dir={single}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_train(*ARGS, *DDP, "trainer.max_steps=12", f"hydra.run.dir={ddp}")
    assert result.returncode == 0, result.stderr[-3000:]

    one, two = metrics_of(single), metrics_of(ddp)
    assert one["step"].tolist() == two["step"].tolist() == list(range(13))
    assert summary_of(ddp)["steps"] == 12 and summary_of(ddp)["batch_size"] == 64
    # The same images and draws, split in two: only BN's per-process batch statistics differ.
    train = one["train_loss"].notna()
    torch.testing.assert_close(
        torch.tensor(two.loc[train, "train_loss"].values),
        torch.tensor(one.loc[train, "train_loss"].values), rtol=0.05, atol=0,
    )  # fmt: skip
    evaluated = one["test_error"].notna()
    assert (two["test_error"].notna() == evaluated).all()
    assert (two.loc[evaluated, "test_error"] - one.loc[evaluated, "test_error"]).abs().max() < 0.05
    # Books kept once: one metrics file, one summary, written by rank 0.
    assert [p.name for p in ddp.rglob("*.csv")] == ["metrics.csv"]
    assert len(list(ddp.rglob("summary.json"))) == 1

    # SyncBatchNorm is PyTorch's for GPUs only: on CPUs it is refused before anything runs.
    result = run_train(*ARGS, *DDP, "trainer.max_steps=1", "trainer.sync_batchnorm=true",
                       f"hydra.run.dir={synced}")  # fmt: skip
    assert result.returncode == 2 and "sync_batchnorm needs CUDA GPUs" in result.stderr
    assert not synced.exists()


def test_two_process_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    first = run_train(*ARGS, *DDP, "trainer.max_steps=6", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = summary_of(run_dir)
    summary["status"] = "running"  # as if its processes had died after step 6
    write_summary(run_dir, summary)
    again = run_train(*ARGS, *DDP, "trainer.max_steps=12", f"hydra.run.dir={run_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    summary = summary_of(run_dir)
    assert summary["status"] == "finished" and summary["resumed_from_step"] == 6
    assert summary["steps"] == 12 and summary["attempts"] == 2
    assert metrics_of(run_dir)["step"].tolist() == list(range(13))
