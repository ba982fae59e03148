"""Lesion study (Veit, Wilber, Belongie 2016): delete blocks of a trained net at test time.

A deleted block is replaced by a parameter-free map from its input to an output of its shape:
- residual nets: the block's shortcut alone, ``relu(shortcut(x))`` (the residual branch removed;
  for an identity shortcut that is ``x`` itself, its input having passed a ReLU already);
- plain nets: the identity where the block keeps the shape; where it changes it (the first block
  of stages 2 and 3), option A's map: stride-2 subsampling and zero-padded channels, so that the
  two families are lesioned by the same map.

``single_deletions`` deletes one block at a time (every block, downsampling ones marked);
``random_deletions`` deletes k blocks drawn at random among the blocks that keep the shape, k =
1..K, several draws each. Test error is measured in eval mode (BN with its running statistics) on
the test set or its first ``max_images``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from degradation.analysis.base import Context, Section, probe_section, write_probe
from degradation.models import CifarNet, Unit, ZeroPadShortcut


class Deleted(nn.Module):
    """What a deleted block becomes: its shortcut path (:meth:`Unit.shortcut_path`: the shortcut
    as the unit weighs it, then a post unit's ReLU) for a residual net, the identity or option A's
    map, then the ReLU, for a plain one."""

    def __init__(self, block: Unit) -> None:
        super().__init__()
        in_channels, out_channels = block.conv1.in_channels, block.convs()[-1].out_channels
        stride = block.conv1.stride[0]
        self.unit = [block] if block.shortcut is not None else []  # a list: not a submodule
        if block.shortcut is not None:
            self.map = block.shortcut
        elif stride != 1 or in_channels != out_channels:
            self.map = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.map = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit:
            return self.unit[0].shortcut_path(x)
        return F.relu(self.map(x))


def blocks_of(net: CifarNet) -> list[tuple[int, int, Unit]]:
    """(stage, index in stage, block) of every block, in forward order."""
    return [(s, j, block) for s, stage in enumerate(net.stages) for j, block in enumerate(stage)]


def keeps_shape(block: Unit) -> bool:
    """Whether a block's output has its input's shape (not a downsampling block)."""
    return block.conv1.stride == (1, 1) and block.conv1.in_channels == block.conv2.out_channels


def lesioned(net: CifarNet, deleted: Sequence[int]) -> CifarNet:
    """A copy of ``net`` with the blocks at these forward-order positions deleted."""
    copy_ = copy.deepcopy(net)
    for position, (s, j, block) in enumerate(blocks_of(copy_)):
        if position in set(deleted):
            copy_.stages[s][j] = Deleted(block)
    return copy_.eval()


@torch.inference_mode()
def test_error(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500):
    """Top-1 error of ``net`` in eval mode on preprocessed images."""
    net.eval()
    wrong = sum(
        int((net(images[i : i + batch]).argmax(1) != labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    return wrong / len(images)


def single_deletions(net: CifarNet, images, labels) -> pd.DataFrame:
    """Test error with each block deleted alone (block 0 = none deleted, the baseline)."""
    rows = [{"block": 0, "downsampling": False, "test_error": test_error(net, images, labels)}]
    for position, (_, _, block) in enumerate(blocks_of(net)):
        rows.append({
            "block": position + 1, "downsampling": not keeps_shape(block),
            "test_error": test_error(lesioned(net, [position]), images, labels),
        })  # fmt: skip
    return pd.DataFrame(rows)


def random_deletions(
    net: CifarNet, images, labels, max_k: int, draws: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Test error with k random shape-keeping blocks deleted, ``draws`` draws per k."""
    candidates = [i for i, (_, _, b) in enumerate(blocks_of(net)) if keeps_shape(b)]
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, min(max_k, len(candidates)) + 1):
        for draw in range(draws):
            chosen = sorted(rng.choice(candidates, size=k, replace=False).tolist())
            error = test_error(lesioned(net, chosen), images, labels)
            rows.append({"k": k, "draw": draw, "deleted": chosen, "test_error": error})
    return pd.DataFrame(rows)


def study(
    nets: dict[str, CifarNet],
    images: torch.Tensor,
    labels: torch.Tensor,
    max_k: int = 10,
    draws: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Single and random deletions for each named net: (single table, random table)."""
    singles, randoms, start = [], [], time.perf_counter()
    for name, net in nets.items():
        family = "resnet" if net.residual else "plain"
        key = {"net": name, "family": family, "depth": net.depth}
        single = single_deletions(net, images, labels).assign(**key)
        progress(f"{name}: {len(single) - 1} single deletions "
                 f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
        randoms.append(random_deletions(net, images, labels, max_k, draws, seed).assign(**key))
        progress(f"{name}: random deletions of 1..{max_k} blocks "
                 f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
        singles.append(single)
    return pd.concat(singles, ignore_index=True), pd.concat(randoms, ignore_index=True)


def figure(single: pd.DataFrame, random: pd.DataFrame) -> Figure:
    """Veit et al.'s two views: error after deleting each single block (left) and error against
    the number of random deleted blocks (right); red plain, blue residual."""
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    colors = {"plain": "tab:red", "resnet": "tab:blue"}
    for name, group in single.groupby("net", sort=True):
        family = group["family"].iloc[0]
        base = group.loc[group["block"] == 0, "test_error"].iloc[0]
        rest = group[group["block"] > 0]
        left.plot(rest["block"], 100 * rest["test_error"], "o-", ms=3, color=colors[family],
                  label=f"{name}")  # fmt: skip
        down = rest[rest["downsampling"]]
        left.plot(down["block"], 100 * down["test_error"], "kx", ms=6)
        left.axhline(100 * base, color=colors[family], ls=":", lw=1)
    left.set_xlabel("deleted block (x: a downsampling block)")
    left.set_ylabel("test error (%)")
    left.set_title("one block deleted (dotted: none deleted)", fontsize=9)
    for name, group in random.groupby("net", sort=True):
        stats = group.groupby("k")["test_error"].agg(["mean", "std"]).reset_index()
        color = colors[group["family"].iloc[0]]
        right.errorbar(stats["k"], 100 * stats["mean"], yerr=100 * stats["std"].fillna(0),
                       fmt="o-", ms=3, capsize=2, color=color, label=name)  # fmt: skip
    right.set_xlabel("number of random shape-keeping blocks deleted")
    right.set_ylabel("test error (%)")
    right.set_title("k blocks deleted (mean and std over draws)", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def report_section(single: pd.DataFrame, random: pd.DataFrame) -> str:
    """Baseline error, the worst and median single shape-keeping deletion, and k = 1..K."""
    lines = ["## Lesions", "", (__doc__ or "").split("\n\n", 1)[1].strip(), ""]
    lines.append("| net | none deleted | one shape-keeping block: median / worst | one "
                 "downsampling block: worst |")  # fmt: skip
    lines.append("|---|---|---|---|")
    for name, group in single.groupby("net", sort=True):
        base = group.loc[group["block"] == 0, "test_error"].iloc[0]
        keep = group[(group["block"] > 0) & ~group["downsampling"]]["test_error"]
        down = group[group["downsampling"]]["test_error"]
        lines.append(f"| {name} | {100 * base:.1f}% | {100 * keep.median():.1f}% / "
                     f"{100 * keep.max():.1f}% | {100 * down.max():.1f}% |")  # fmt: skip
    means = random.groupby(["net", "k"])["test_error"].mean().unstack("k")
    lines += ["", "Mean test error with k random shape-keeping blocks deleted:", ""]
    lines.append((100 * means).round(1).to_markdown())
    return "\n".join(lines) + "\n"


def write(single: pd.DataFrame, random: pd.DataFrame, out: Path, formats=("png", "pdf")) -> None:
    """lesions_single.csv, lesions_random.csv, lesions.{png,pdf}, lesions.md."""
    tables = {"lesions_single": single, "lesions_random": random}
    text = report_section(single, random)
    write_probe(out, "lesions", tables, figure(single, random), text, formats)


TITLE = "Lesions: deleting blocks of trained nets"
NEEDS = "lesions_single.csv and lesions_random.csv from experiments/probe_lesions.py"


def section(ctx: Context) -> Section:
    """This probe's table and figure, where its outputs are found."""
    section, _ = probe_section(
        ctx,
        TITLE,
        NEEDS,
        ["lesions_single.csv", "lesions_random.csv"],
        "lesions.png",
        report_section,
    )
    return section
