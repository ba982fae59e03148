"""Why plain nets degrade: layer responses (the paper's Fig. 7) and gradient norms (Section 4.1).

- Layer responses: the standard deviation of each 3x3 layer's output after its BN and before the
  ReLU or the addition, over a whole evaluation set, computed from a trained run's checkpoint.
- Gradient norms: the L2 norm of the loss gradient with respect to each conv layer's weights,
  logged during training by :class:`degradation.callbacks.GradientNorms` as ``grad_conv{i}``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from degradation.data import DataUnavailableError
from degradation.models import BasicBlock, Block, BottleneckBlock, CifarNet, ImageNetNet
from degradation.runs import CONFIG_FILE

GRAD_PREFIX = "grad_conv"
RESPONSES_FILE = "responses.csv"


def response_layers(net: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BN after each 3x3 conv, in forward order: the stem, then the blocks' 3x3 layers."""
    if isinstance(net, CifarNet):
        layers = [("stem", net.stem[1])]
        blocks = [(name, m) for name, m in net.named_modules() if isinstance(m, Block)]
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


def conv_layers(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The 3x3 convs in forward order (projection shortcuts excluded)."""
    return [
        (name, m)
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]


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


WEIGHTS_FILE = "weights.pt"


def export_weights(run_dir: str | Path, checkpoint: str = "final.ckpt") -> Path:
    """Write the net's final weights alone (fp32 state dict) to ``RUN_DIR/weights.pt``: what a
    shipped run keeps so that probes can rebuild it without its checkpoints."""
    run_dir = Path(run_dir)
    state = torch.load(run_dir / "checkpoints" / checkpoint, map_location="cpu",
                       weights_only=False)["state_dict"]  # fmt: skip
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    torch.save(weights, run_dir / WEIGHTS_FILE)
    return run_dir / WEIGHTS_FILE


def load_run(run_dir: str | Path, checkpoint: str = "final.ckpt"):
    """Rebuild a run's net and data module from its config, with the checkpoint's weights (or,
    without checkpoints, the exported ``weights.pt``)."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / checkpoint
    exported = run_dir / WEIGHTS_FILE
    if not path.is_file() and not exported.is_file():
        raise FileNotFoundError(
            f"{run_dir.name}: no checkpoints/{checkpoint}, no {WEIGHTS_FILE} and no "
            f"{RESPONSES_FILE}"
        )
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir.name}: no resolved {CONFIG_FILE} to rebuild it from")
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    datamodule = instantiate(cfg.data)
    net = instantiate(
        cfg.model, in_channels=datamodule.in_channels, num_classes=datamodule.num_classes
    )
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    else:
        state = torch.load(exported, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net, datamodule


def run_responses(run_dir: str | Path, max_images: int | None = None) -> np.ndarray:
    """Layer response stds of a finished run over its test set (or its first ``max_images``).

    Computed once from ``checkpoints/final.ckpt`` and kept in the run's ``responses.csv``, so
    the numbers stay with the run when its checkpoints are not kept.
    """
    run_dir = Path(run_dir)
    cached = run_dir / RESPONSES_FILE
    if cached.is_file():
        return pd.read_csv(cached)["std"].to_numpy()
    net, dm = load_run(run_dir)
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
    frame = pd.DataFrame({"layer": range(1, len(stds) + 1), "name": names, "std": stds})
    frame.to_csv(cached, index=False)
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
        if progress and not (Path(run["path"]) / RESPONSES_FILE).is_file():
            progress(f"layer responses {i}/{len(finished)}: {run['run']} (from its checkpoint)")
        try:
            stds = run_responses(run["path"], max_images=max_images)
        except (FileNotFoundError, DataUnavailableError) as err:
            skipped.append(
                f"{run['run']}: {err}" if isinstance(err, DataUnavailableError) else str(err)
            )
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


def gradient_columns(metrics: pd.DataFrame) -> list[str]:
    """The per-layer gradient-norm columns in layer order."""
    cols = [c for c in metrics.columns if c.startswith(GRAD_PREFIX)]
    return sorted(cols, key=lambda c: int(c[len(GRAD_PREFIX) :]))


def gradient_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Tidy gradient norms: run, net, family, depth, seed, step, layer, norm."""
    cols = gradient_columns(metrics)
    if not cols:
        return pd.DataFrame(
            columns=["run", "net", "family", "depth", "seed", "step", "layer", "norm"]
        )
    logged = metrics.dropna(subset=cols, how="all")
    tidy = logged.melt(
        id_vars=["run", "net", "family", "depth", "seed", "step"],
        value_vars=cols,
        var_name="layer",
        value_name="norm",
    ).dropna(subset=["norm"])
    tidy["layer"] = tidy["layer"].str[len(GRAD_PREFIX) :].astype(int)
    return tidy.sort_values(["run", "step", "layer"], ignore_index=True)


def gradient_spread(grads: pd.DataFrame) -> pd.DataFrame:
    """Per run and logged step: smallest/largest per-layer norm and first/last layer ratio."""

    def stats(group: pd.DataFrame) -> pd.Series:
        norms = group.sort_values("layer")["norm"].to_numpy()
        return pd.Series(
            {
                "min_over_max": norms.min() / norms.max() if norms.max() > 0 else math.nan,
                "first_over_last": norms[0] / norms[-1] if norms[-1] > 0 else math.nan,
            }
        )

    keys = ["run", "net", "family", "depth", "seed", "step"]
    return grads.groupby(keys).apply(stats, include_groups=False).reset_index()
