"""Are residual functions small? The standard deviation of each 3x3 layer's response (after its
BN, before the ReLU or the addition) over a whole evaluation set, computed from each finished
run's final weights, as in the paper's Fig. 7 (Section 4.2)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from degradation.analysis.base import Context, Section, keep_cache, read_cached_column
from degradation.analysis.select import comparable, main_group
from degradation.analysis.stats import (
    MIN_SEEDS,
    UNDECIDED,
    Reading,
    compare,
    mean_interval,
    no_interval,
    reading,
)
from degradation.analysis.style import net_key, net_styles
from degradation.analysis.trained import WEIGHTS_FILE, load_run
from degradation.checkpoints import BadFile, report_skip
from degradation.data import DataUnavailableError
from degradation.models import BasicBlock, BottleneckBlock, CifarNet, ImageNetNet, Unit

TITLE = "Layer responses (Fig. 7 style)"
# (Of the nets of the 2015 design: the paper's Fig. 7 compares those.)
NEEDS = "finished runs with final weights (checkpoints/final.ckpt or weights.pt) or responses.csv"
RESPONSES_FILE = "responses.csv"
# Residual responses count as smaller when their ratio to the plain ones is below 1 - this.
RESPONSE_MARGIN = 0.05


def response_layers(net: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BN after each 3x3 conv, in forward order: the stem, then the blocks' 3x3 layers."""
    if isinstance(net, CifarNet):
        if not net.design.is_2015_block:
            raise TypeError("layer responses are defined for the 2015 unit (block=post, basic)")
        layers = [("stem", net.stem[1])]
        blocks = [(name, m) for name, m in net.named_modules() if isinstance(m, Unit)]
        for name, block in blocks:
            layers += [(f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2)]
        return layers
    if isinstance(net, ImageNetNet):
        layers = [("stem", net.bn1)]
        for name, block in net.named_modules():
            if isinstance(block, (BasicBlock, BottleneckBlock)):
                for i in (1, 2, 3):
                    conv = getattr(block, f"conv{i}", None)
                    if conv is not None and conv.kernel_size == (3, 3):
                        layers.append((f"{name}.bn{i}", getattr(block, f"bn{i}")))
        return layers
    raise TypeError(f"layer responses are not defined for {type(net).__name__}")


@torch.inference_mode()
def layer_response_std(net: nn.Module, batches) -> np.ndarray:
    """Std of each 3x3 layer's response (after BN, before ReLU/addition) over all ``batches``.

    ``batches`` yields preprocessed input tensors. The std is over every value of the layer's
    output (images, channels, positions), accumulated in float64.
    """
    layers = response_layers(net)
    sums = torch.zeros(len(layers), 3, dtype=torch.float64)  # count, sum, sum of squares

    def hook(index):
        def record(_module, _inputs, output):
            out = output.detach().float()
            # float64 accumulators without a float64 copy of the whole output
            squares = torch.linalg.vector_norm(out, dtype=torch.float64) ** 2
            sums[index] += torch.stack(
                [
                    torch.tensor(out.numel(), dtype=torch.float64),
                    out.sum(dtype=torch.float64).cpu(),
                    squares.cpu(),
                ]
            )

        return record

    handles = [bn.register_forward_hook(hook(i)) for i, (_, bn) in enumerate(layers)]
    was_training = net.training
    net.eval()
    try:
        for x in batches:
            net(x)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    count, total, squares = sums[:, 0], sums[:, 1], sums[:, 2]
    if (count == 0).any():
        raise ValueError("no batches were given")
    mean = total / count
    var = (squares / count - mean**2).clamp_min(0)
    return var.sqrt().numpy()


def run_responses(run_dir: str | Path, max_images: int | None = None) -> np.ndarray:
    """Layer response stds of a finished run over its test set (or its first ``max_images``).

    Computed once from ``checkpoints/final.ckpt`` and kept in the run's ``responses.csv``, so
    the numbers stay with the run when its checkpoints are not kept.
    """
    run_dir = Path(run_dir)
    cached = run_dir / RESPONSES_FILE
    stds = read_cached_column(cached, "std")
    if stds is not None:
        return stds.to_numpy()
    try:
        net, dm = load_run(run_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} and no {RESPONSES_FILE}") from None
    dm.setup("test")
    if hasattr(dm, "preprocess"):  # data sets held in memory
        images = dm.eval_sets["test"].tensors[0]
        if max_images:
            images = images[:max_images]
        batches = (
            dm.preprocess(images[i : i + 500], train=False) for i in range(0, len(images), 500)
        )
    else:  # image folders: the test loader's batches
        limit = max_images or len(dm.eval_sets["test"])
        steps = -(-limit // dm.eval_batch_size)
        batches = (x for x, _ in itertools.islice(dm.test_dataloader(), steps))
    stds = layer_response_std(net, batches)
    names = [name for name, _ in response_layers(net)]
    keep_cache(pd.DataFrame({"layer": range(1, len(stds) + 1), "name": names, "std": stds}), cached)
    return stds


def responses_table(
    runs: pd.DataFrame, max_images: int | None = None, progress=None
) -> tuple[pd.DataFrame, list[str]]:
    """Layer responses of every finished run that has a final checkpoint.

    Returns a tidy table (run, net, family, depth, seed, layer, std) and notes on skipped runs.
    ``progress`` (e.g. ``print``) hears of each run whose responses are computed, not cached.
    """
    rows, skipped = [], []
    finished = runs[runs["status"] == "finished"]
    for i, (_, run) in enumerate(finished.iterrows(), start=1):
        path = Path(run["path"])
        weights = [path / "checkpoints" / "final.ckpt", path / WEIGHTS_FILE]
        if progress and not (path / RESPONSES_FILE).is_file() and any(w.is_file() for w in weights):
            progress(f"layer responses {i}/{len(finished)}: {run['run']} (from its weights)")
        try:
            stds = run_responses(run["path"], max_images=max_images)
        except Exception as err:  # noqa: BLE001 - one run's damage must not stop the others
            note = str(err) if isinstance(err, FileNotFoundError) else f"{run['run']}: {err}"
            if isinstance(err, BadFile):
                report_skip(run["run"], err)
            elif not isinstance(err, (FileNotFoundError, DataUnavailableError, TypeError)):
                note = f"{run['run']}: {type(err).__name__}: {err}"
                print(f"skipping {note}", file=sys.stderr)
            skipped.append(note)
            continue
        for i, value in enumerate(stds, start=1):
            rows.append(
                {
                    "run": run["run"],
                    "net": run["net"],
                    "family": run["family"],
                    "depth": run["depth"],
                    "seed": run["seed"],
                    "layer": i,
                    "std": float(value),
                }
            )
    return pd.DataFrame(rows), skipped


def _median_by_net(responses: pd.DataFrame) -> pd.Series:
    return responses.groupby("net")["std"].median()


def paired_ratios(responses: pd.DataFrame) -> tuple[int, pd.Series] | None:
    """At the deepest depth with both families: per seed, the median over the layers of the
    residual over the plain net's response std, layer by layer (seed s of each family); None
    without such a depth."""
    depths = set(responses.loc[responses["family"] == "plain", "depth"]) & set(
        responses.loc[responses["family"] == "resnet", "depth"]
    )
    if not depths:
        return None
    depth = max(depths)
    at = responses[responses["depth"] == depth]
    if "seed" not in at or at["seed"].isna().any():
        return None
    table = at.pivot_table(index=["seed", "layer"], columns="family", values="std")
    if not {"plain", "resnet"} <= set(table.columns):
        return None  # no seed holds both families
    table = table.dropna(subset=["plain", "resnet"])
    if table.empty:
        return None
    ratios = (table["resnet"] / table["plain"]).groupby(level="seed").median()
    return int(depth), ratios


def smaller(responses: pd.DataFrame) -> Reading:
    """Claim 11's reading: are the residual net's layer responses smaller than the plain
    net's, by more than :data:`RESPONSE_MARGIN` (the 95% interval over seeds of the paired
    ratio)?"""
    found = paired_ratios(responses)
    if found is None:
        why = "needs plain and residual nets of a common depth and seed (seed s with seed s)"
        return Reading(UNDECIDED, "-", why)
    depth, ratios = found
    logs = np.log(ratios.to_numpy(float))
    mean, ci = mean_interval(logs, MIN_SEEDS)
    medians = responses[responses["depth"] == depth].groupby("family")["std"].median()
    measured = (
        f"median layer response at depth {depth}: plain {medians['plain']:.3g}, residual "
        f"{medians['resnet']:.3g}; residual over plain, layer by layer: {np.exp(mean):.3f}"
        + ("" if ci is None else f" (95% interval {np.exp(ci[0]):.3f} to {np.exp(ci[1]):.3f})")
        + f" over {len(logs)} seed pair(s)"
    )
    # smaller by the margin: -log(ratio) above -log(1 - margin)
    found = compare(-mean, None if ci is None else (-ci[1], -ci[0]), -np.log(1 - RESPONSE_MARGIN))
    why = no_interval(logs) or f"not smaller by {100 * RESPONSE_MARGIN:.0f}% beyond doubt"
    return reading(found, measured, why, f"not smaller by {100 * RESPONSE_MARGIN:.0f}%")


def responses_text(responses: pd.DataFrame, decided: pd.DataFrame | None = None) -> str:
    """Median layer response per net, and the paired reading at the deepest common depth of
    ``decided`` (the runs the ledger's claim 11 reads; all of ``responses`` by default), in the
    ledger's words."""
    decided = responses if decided is None else decided
    medians = _median_by_net(responses)
    order = sorted(medians.index, key=net_key)
    listed = ", ".join(f"{n} {medians[n]:.3f}" for n in order)
    text = f"Median std of the 3x3 layers' responses: {listed}."
    if len(decided) and paired_ratios(decided) is not None:
        found = smaller(decided)
        why = f" ({found.why})" if found.why else ""
        text += (
            f" Residual responses smaller than plain (Fig. 7): **{found.verdict}**{why}. "
            f"{found.measured}."
        )
    return text


def fig7(responses: pd.DataFrame) -> Figure:
    """Fig. 7 style: std of each 3x3 layer's response, in layer order (top) and sorted (bottom)."""
    if responses.empty:
        raise ValueError("no layer responses to plot")
    means = responses.groupby(["net", "family", "depth", "layer"])["std"].mean().reset_index()
    nets = sorted(means["net"].unique(), key=net_key)
    styles = net_styles(nets)
    fig = Figure(figsize=(8.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for net in nets:
        values = means[means["net"] == net].sort_values("layer")["std"].to_numpy()
        x = range(1, len(values) + 1)
        top.plot(x, values, label=net, **styles[net])
        bottom.plot(x, sorted(values, reverse=True), label=net, **styles[net])
    top.set(xlabel="layer index (original order)", ylabel="std of response")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std of response")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize=8, ncol=2)
    fig.suptitle(
        "Std of each 3x3 layer's response (after BN, before ReLU/addition), test set", fontsize=10
    )
    return fig


def section(ctx: Context) -> Section:
    """The median responses in words and the figure (also responses.csv)."""
    responses, skipped = responses_table(comparable(ctx.runs), progress=ctx.progress)
    out = Section(TITLE, skipped=[f"layer responses of {msg}" for msg in skipped])
    if responses.empty:
        out.answered = False
        out.skipped.append(f"Fig. 7: needs {NEEDS}")
        return out
    ctx.save_table(responses, "responses")
    main, _ = main_group(comparable(ctx.runs))  # the runs the ledger's claim 11 reads
    decided = responses[responses["run"].isin(main["run"])]
    out.lines += [responses_text(responses, decided), "", ctx.save_figure(fig7(responses), "fig7")]
    return out
