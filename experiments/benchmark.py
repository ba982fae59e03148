"""Training speed: our Lightning path against a bare loop and the common torchvision pipeline.

    python experiments/benchmark.py [--depths 20 56] [--steps 30] [--repeats 2]
                                    [--data synthetic|fashion_mnist|cifar10] [--out DIR]

In one process, on the same net, data and batch size, measures training images per second of

- (a)  our training path: the Lightning Trainer and module built by ``degradation.runs.build``
       from the project's configs (device-resident data, batched augmentation, channels-last,
       ``trainer.precision=auto``), with its default logging and callbacks;
- (b)  a bare PyTorch loop with the same net, speed settings and data path;
- (c)  the common reproduction pipeline: a CIFAR10-style torchvision dataset with per-image
       ``RandomCrop(padding=4)``, ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` in a
       DataLoader with worker processes, and a plain fp32 loop;
- (a0) our path with the speed settings off (fp32, NCHW): what the data path alone gives.

It also times evaluation on the test set through (a), counts the floating-point operations of one
training step and compares the achieved rate with the machine's peak. Writes
``training_speed.csv`` (every measurement) and ``training_speed.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T
from torchvision.datasets import VisionDataset

from degradation.config import register
from degradation.data import DeviceBatches
from degradation.runs import build, quiet_lightning
from degradation.speed import (
    apply_speed_settings,
    cpu_description,
    device_for,
    keep_strided_1x1_nchw,
)

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 128


# ------------------------------------------------------------------------------------------
# Configuration and hardware
# ------------------------------------------------------------------------------------------


def make_config(args: argparse.Namespace, family: str, depth: int, fast: bool, tmp: Path, extra=()):
    """The project's training configuration for one benchmarked net (no evaluation, no saves)."""
    overrides = [
        f"model={'resnet' if family == 'resnet' else 'plain'}",
        f"model.depth={depth}",
        f"data={args.data}",
        f"data_dir={args.data_dir}",
        f"data.batch_size={BATCH_SIZE}",
        f"trainer.max_steps={args.warmup + args.steps}",
        f"eval_every={10 * (args.warmup + args.steps)}",
        f"trainer.default_root_dir={tmp}",
        f"logger.metrics.save_dir={tmp}",
        "callbacks=parallel",  # what sweeps use: progress as a log line every 100 steps
        "~callbacks.checkpoint",
        "trainer.enable_progress_bar=false",
        f"seed={args.seed}",
        f"model.width={args.width}",
    ]
    if args.threads:
        overrides.append(f"threads={args.threads}")
    if args.data == "synthetic":  # CIFAR-10's shape: 32x32 RGB, 10 classes
        overrides += [f"data.num_train={args.num_train}", f"data.num_test={args.num_test}"]
    if not fast:
        overrides += ["trainer.precision=32-true", "speed.channels_last=false"]
    if args.compile and fast:
        overrides.append("speed.compile=true")
    overrides += list(extra)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    apply_speed_settings(cfg)
    return cfg


def device_of(cfg: DictConfig) -> torch.device:
    """The device Lightning picks for ``trainer.accelerator``."""
    return device_for(str(cfg.trainer.accelerator))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def nominal_peak(device: torch.device, bf16: bool) -> tuple[float | None, str]:
    """The device's nominal peak FLOP/s for the precision used, and how it was derived."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        # Dense (no sparsity) tensor-core peaks from NVIDIA's data sheets, SXM parts.
        table = {
            "H100": (989.4e12, 66.9e12),
            "H200": (989.4e12, 66.9e12),
            "A100": (312e12, 19.5e12),
        }
        for key, (bf16_peak, fp32_peak) in table.items():
            if key in name:
                peak = bf16_peak if bf16 else fp32_peak
                kind = "bf16 dense tensor-core" if bf16 else "fp32 (non-tensor-core)"
                return peak, f"{name}: NVIDIA data-sheet {kind} peak"
        return None, f"{name}: no nominal peak on file (see the measured matmul rate)"
    cpu = cpu_description()
    cores, ghz, flags = os.cpu_count() or 1, cpu["ghz"], cpu["flags"]
    if not ghz:
        return None, "CPU clock unknown"
    if bf16 and "amx_bf16" in flags:
        per_cycle, how = 1024, "AMX: 1024 bf16 FLOP/cycle/core"
    elif "avx512f" in flags:
        per_cycle, how = 64, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOP/cycle/core"
    elif "avx2" in flags:
        per_cycle, how = 32, "AVX2: 2 FMA units x 8 fp32 lanes x 2 FLOP/cycle/core"
    else:
        per_cycle, how = 8, "SSE: 8 fp32 FLOP/cycle/core"
    peak = cores * ghz * 1e9 * per_cycle
    return peak, f"{cores} cores x {ghz:.2f} GHz (cpuinfo) x {per_cycle} ({how})"


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 2048) -> float:
    """FLOP/s of a large square matrix product: a practical peak of the device."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        a @ b
        repeats += 1
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def step_flops(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Floating-point operations of one training step (forward and backward) of ``net``."""
    x = torch.randn(*shape)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------
# The three training paths
# ------------------------------------------------------------------------------------------


class StepTimer(L.Callback):
    """Times training from the end of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        elif trainer.global_step == trainer.max_steps:
            synchronize(pl_module.device)
            self.end = time.perf_counter()
            self.steps = trainer.global_step - self.warmup


def lightning_path(
    cfg: DictConfig, warmup: int, tmp: Path, layouts: list | None = None
) -> tuple[float, float]:
    """(a): training images/s of the project's Trainer, then evaluation images/s on the test set.
    ``layouts`` collects the memory format of each training batch the net receives."""
    timer = StepTimer(warmup)
    setup = build(cfg, tmp, extra_callbacks=[timer])
    if layouts is not None:

        def record(module, args):
            if module.training:
                layouts.append(input_layout(args[0]))

        setup.net.register_forward_pre_hook(record)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    train_rate = timer.steps * BATCH_SIZE / (timer.end - timer.start)
    n_test = len(setup.datamodule.eval_sets["test"])
    setup.trainer.validate(setup.module, datamodule=setup.datamodule, verbose=False)  # warm
    start = time.perf_counter()
    setup.trainer.validate(setup.module, datamodule=setup.datamodule, verbose=False)
    synchronize(device_of(cfg))
    return train_rate, n_test / (time.perf_counter() - start)


def input_layout(x: torch.Tensor) -> str:
    """``channels-last`` or ``NCHW``: the memory format of a batch (``either`` for 1 channel)."""
    last, nchw = x.is_contiguous(memory_format=torch.channels_last), x.is_contiguous()
    return "either" if last and nchw else "channels-last" if last else "NCHW" if nchw else "other"


def layout_study(args: argparse.Namespace, tmp: Path) -> pd.DataFrame:
    """Path (a) with ``speed.channels_last`` true and false, at fp32 and at bf16, per net: the
    training rate and the layout the net's input really had."""
    rows = []
    for repeat in range(args.repeats):
        for family in args.families:
            for depth in args.depths:
                for precision in args.precisions:
                    order = [True, False] if repeat % 2 == 0 else [False, True]
                    for channels_last in order:
                        extra = [f"trainer.precision={precision}",
                                 f"speed.channels_last={str(channels_last).lower()}"]  # fmt: skip
                        cfg = make_config(args, family, depth, True, tmp, extra)
                        layouts: list[str] = []
                        rate, _ = lightning_path(cfg, args.warmup, tmp, layouts)
                        rows.append({"net": f"{family}-{depth}", "precision": precision,
                                     "channels_last": channels_last, "repeat": repeat,
                                     "img_per_s": round(rate, 2),
                                     "input_layout": "/".join(sorted(set(layouts)))})  # fmt: skip
                        print(f"round {repeat + 1}/{args.repeats} {family}-{depth} {precision} "
                              f"channels_last={channels_last}: {rate:.0f} img/s, input "
                              f"{rows[-1]['input_layout']}", flush=True)  # fmt: skip
    return pd.DataFrame(rows)


def layout_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Median images/s per net and precision in each layout, and their ratio."""
    median = rows.pivot_table(index=["net", "precision"], columns="channels_last",
                              values="img_per_s", aggfunc="median", sort=False)  # fmt: skip
    seen = rows.groupby(["net", "precision", "channels_last"], sort=False)["input_layout"].agg(
        lambda s: "/".join(sorted(set(s)))
    )
    table = pd.DataFrame(index=median.index)
    table["NCHW img/s"] = median[False].round(1)
    table["channels-last img/s"] = median[True].round(1)
    table["channels-last / NCHW"] = (median[True] / median[False]).round(3)
    table["input seen (false / true)"] = [
        f"{seen[(n, p, False)]} / {seen[(n, p, True)]}" for n, p in median.index
    ]
    return table.reset_index()


def make_net_and_optimizer(cfg: DictConfig, datamodule, device, channels_last: bool):
    L.seed_everything(cfg.seed, verbose=False)
    net = instantiate(
        cfg.model, in_channels=datamodule.in_channels, num_classes=datamodule.num_classes
    ).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        if device.type == "cpu":
            keep_strided_1x1_nchw(net)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer)
    return net, optimizer, scheduler


def sgd_update(net, optimizer, scheduler, images, labels, bf16: bool) -> None:
    """One training step of the plain loops (b) and (c): forward, loss, backward, update."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(net(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()


def timed_loop(step, batches, warmup: int, steps: int, device: torch.device) -> float:
    """Images/s of ``step`` over ``steps`` batches after ``warmup`` untimed ones."""
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            start = time.perf_counter()
        step(*next(batches))
    synchronize(device)
    return steps * BATCH_SIZE / (time.perf_counter() - start)


def forever(loader):
    while True:
        yield from loader


def bare_loop(cfg: DictConfig, warmup: int, steps: int) -> float:
    """(b): the same net, speed settings and device-resident data path, in a plain loop."""
    device = device_of(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    channels_last = bool(cfg.speed.channels_last)
    net, optimizer, scheduler = make_net_and_optimizer(cfg, datamodule, device, channels_last)
    net.train()
    x, y = (t.to(device) for t in datamodule.train_set.tensors)
    loader = DeviceBatches(
        x, y, BATCH_SIZE, shuffle=True, seed=cfg.seed, augment=True, pad=4, flip=True
    )
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(images, labels, aug):
        images = datamodule.preprocess(images, train=True, aug=aug)
        images = images.contiguous(memory_format=memory_format)
        sgd_update(net, optimizer, scheduler, images, labels, bf16)

    return timed_loop(step, forever(loader), warmup, steps, device)


class CIFAR10Style(VisionDataset):
    """A dataset in the layout of torchvision's ``CIFAR10``: HWC uint8 array, PIL per image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        super().__init__(root="", transform=transform)
        self.data = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) like CIFAR10.data
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data[index]
        image = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        return self.transform(image), self.targets[index]


def torchvision_pipeline(cfg: DictConfig, warmup: int, steps: int, workers: int) -> float:
    """(c): per-image torchvision transforms in a DataLoader with workers, fp32, NCHW."""
    device = device_of(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    images, labels = datamodule.train_set.tensors
    mean = (images.float().mean(dim=(0, 2, 3)) / 255).tolist()
    std = (images.float().std(dim=(0, 2, 3)) / 255).tolist()
    transform = T.Compose(
        [
            T.RandomCrop(images.shape[-1], padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    loader = torch.utils.data.DataLoader(
        CIFAR10Style(images, labels, transform),
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )
    net, optimizer, scheduler = make_net_and_optimizer(cfg, datamodule, device, False)
    net.train()

    def step(images, labels):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        sgd_update(net, optimizer, scheduler, images, labels, bf16=False)

    return timed_loop(step, forever(loader), warmup, steps, device)


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def summarize(rows: pd.DataFrame, flops: dict, peaks: dict) -> pd.DataFrame:
    """Median images/s per net and path, the ratios and the FLOP rates."""
    median = rows.pivot_table(index=["net", "depth"], columns="path", values="img_per_s",
                              aggfunc="median", sort=False)  # fmt: skip
    table = pd.DataFrame(index=median.index)
    for path in ("a", "b", "c", "a0"):
        table[f"{path} img/s"] = median[path].round(1)
    table["a/b"] = (median["a"] / median["b"]).round(3)
    table["a/c"] = (median["a"] / median["c"]).round(3)
    table["a/a0"] = (median["a"] / median["a0"]).round(3)
    evals = rows[rows.path == "a"].groupby(["net", "depth"], sort=False)["eval_img_per_s"].median()
    table["a eval img/s"] = evals.round(1)
    table["GFLOP/step"] = [round(flops[net] / 1e9, 2) for net, _ in table.index]
    achieved = np.array([flops[net] for net, _ in table.index]) * median["a"] / BATCH_SIZE
    table["a GFLOP/s"] = (achieved / 1e9).round(1)
    if peaks["nominal"]:
        table["a % of peak"] = (100 * achieved / peaks["nominal"]).round(1)
    table["a % of matmul"] = (100 * achieved / peaks["matmul"]).round(1)
    return table.reset_index()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--families", nargs="+", default=["plain", "resnet"])
    parser.add_argument("--steps", type=int, default=30, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all paths")
    parser.add_argument("--data", default="synthetic", choices=["synthetic", "fashion_mnist",
                                                                 "cifar10"])  # fmt: skip
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--num-train", type=int, default=12800)
    parser.add_argument("--num-test", type=int, default=2560)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of (c)")
    parser.add_argument("--compile", action="store_true", help="(a) and (b) with torch.compile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16, help="first stage's width (paper: 16)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="only path (a), channels-last against NCHW at each --precisions",
    )
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error("--steps, --warmup and --repeats must be positive")
    register()
    quiet_lightning()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # no per-fit banners

    if args.layouts:
        return write_layout_study(args)
    rows, flops = [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        probe = make_config(args, "plain", args.depths[0], True, tmp)
        device, precision = device_of(probe), str(probe.trainer.precision)
        bf16 = precision.startswith("bf16")
        for repeat in range(args.repeats):
            for family in args.families:
                for depth in args.depths:
                    net_name = f"{family}-{depth}"
                    fast = make_config(args, family, depth, True, tmp)
                    slow = make_config(args, family, depth, False, tmp)
                    measured = {}
                    # Alternate the order between rounds so drifts do not favour one path.
                    order = ["a", "b", "c", "a0"] if repeat % 2 == 0 else ["a0", "c", "b", "a"]
                    for path in order:
                        evaluation = None
                        if path == "a":
                            rate, evaluation = lightning_path(fast, args.warmup, tmp)
                        elif path == "b":
                            rate = bare_loop(fast, args.warmup, args.steps)
                        elif path == "c":
                            rate = torchvision_pipeline(slow, args.warmup, args.steps, args.workers)
                        else:
                            rate, _ = lightning_path(slow, args.warmup, tmp)
                        measured[path] = rate
                        rows.append({"net": net_name, "depth": depth, "path": path,
                                     "repeat": repeat, "img_per_s": round(rate, 2),
                                     "eval_img_per_s": evaluation})  # fmt: skip
                    print(
                        f"round {repeat + 1}/{args.repeats} {net_name}: "
                        + ", ".join(f"{p} {r:.0f} img/s" for p, r in measured.items())
                        + f"; a/b {measured['a'] / measured['b']:.3f},"
                        f" a/c {measured['a'] / measured['c']:.3f}",
                        flush=True,
                    )
                    if net_name not in flops:
                        dm = instantiate(fast.data)
                        dm.setup("fit")
                        net = instantiate(fast.model, in_channels=dm.in_channels,
                                          num_classes=dm.num_classes)  # fmt: skip
                        shape = (BATCH_SIZE, *dm.train_set.tensors[0].shape[1:])
                        flops[net_name] = step_flops(net, shape)
        nominal, how = nominal_peak(device, bf16)
        peaks = {
            "nominal": nominal,
            "matmul": matmul_rate(device, torch.bfloat16 if bf16 else torch.float32),
        }
    frame = pd.DataFrame(rows)
    table = summarize(frame, flops, peaks)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "training_speed.csv", index=False)
    threads = torch.get_num_threads()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{cpu_description()['name']}, {os.cpu_count()} cores, {threads} threads")  # fmt: skip
    shape = "CIFAR-10-shaped synthetic images (3x32x32)" if args.data == "synthetic" else args.data
    peak_text = f"{nominal / 1e9:.0f} GFLOP/s" if nominal else "unknown"
    text = f"""# Training speed: our path against a bare loop and the common torchvision pipeline

- Device: {device_name}.
- Data: {shape}, {args.num_train if args.data == "synthetic" else "all"} training images,
  batch {BATCH_SIZE}; nets of width {args.width}{" (the paper's)" if args.width == 16 else ""}.
- Each number is the median over {args.repeats} rounds of {args.steps} timed iterations after
  {args.warmup} untimed ones; the rounds alternate the order of the paths.

- **a**: our Lightning path (`degradation.runs.build`: device-resident batches, batched
  augmentation, channels-last, precision `{precision}` by `trainer.precision=auto`, default
  logging of loss/error/lr every step and gradient norms every 50 steps).
- **b**: bare PyTorch loop, same net, data path and speed settings.
- **c**: CIFAR10-style torchvision dataset, per-image `RandomCrop(padding=4)` +
  `RandomHorizontalFlip` + `ToTensor` + `Normalize` in a DataLoader with {args.workers} workers,
  fp32, NCHW: the usual reproduction script.
- **a0**: our path with the speed settings off (fp32, NCHW): the data path's share.

{table.to_markdown(index=False)}

- a/b: what Lightning and our logging cost (1.0 = nothing); a/c: speed-up over the usual script.
- FLOPs: `torch.utils.flop_counter` on one forward + backward of the net (multiply-add = 2).
- Peak ({"bf16" if bf16 else "fp32"}): nominal {peak_text} from {how}; a 2048x2048 matmul
  reaches {peaks["matmul"] / 1e9:.0f} GFLOP/s here.
- Evaluation (a eval img/s) is the test set ({args.num_test} images) through `Trainer.validate`.
"""
    (args.out / "training_speed.md").write_text(text)
    print(text)
    return 0


def write_layout_study(args: argparse.Namespace) -> int:
    """Run :func:`layout_study`; write ``channels_last.csv`` and ``channels_last.md``."""
    with tempfile.TemporaryDirectory() as tmp_name:
        rows = layout_study(args, Path(tmp_name))
    table = layout_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "channels_last.csv", index=False)
    cpu = cpu_description()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
        f"{cpu['name']}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"AMX: {'yes' if 'amx_bf16' in cpu['flags'] else 'no'}")  # fmt: skip
    text = f"""# Channels-last against NCHW: path (a) at each precision

- Device: {device}.
- Data: {"CIFAR-10-shaped synthetic images (3x32x32)" if args.data == "synthetic" else args.data},
  batch {BATCH_SIZE}; nets of width {args.width}.
- Path (a), our Lightning training path, with `speed.channels_last=true` and `false` and
  `trainer.precision` forced; each number is the median over {args.repeats} rounds of
  {args.steps} timed iterations after {args.warmup} untimed ones, the two layouts alternating
  their order between rounds.
- "input seen": the memory format of the training batches the net received (a forward
  pre-hook), so the NCHW arm is NCHW.

{table.to_markdown(index=False)}
"""
    (args.out / "channels_last.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
