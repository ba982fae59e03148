"""Where a run lives and how far it got, without importing torch (so finished runs skip fast).

A run's directory name is a function of its configuration: a readable part (family, depth,
shortcut, width, data set, seed) and a short hash of every key that can change what the run
computes. Launching the same sweep again therefore finds each run's directory, and its
``summary.json`` says whether the run finished, diverged, failed, or has to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
# A run in one of these states is not trained again when its sweep is launched again.
DONE = ("finished", "diverged")

# Keys that do not change what a run computes (where files are, how progress is shown, how fast it
# runs, how often it is checkpointed): left out of the hash in the directory name.
NOT_HASHED = (
    "hydra",
    "data_dir",
    "threads",
    "speed",
    "callbacks",
    "logger",
    "data.data_dir",
    "data.download",
    "data.search_dirs",
    "data.eval_batch_size",
    "data.num_workers",
    "trainer.accelerator",
    "trainer.benchmark",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.enable_checkpointing",
    "trainer.log_every_n_steps",
)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json`` atomically."""
    write_atomic(Path(run_dir) / SUMMARY_FILE, json.dumps(dict(summary), indent=2) + "\n")


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary, or None if it has none (yet) or it is unreadable."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def hashed_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The part of a configuration that determines the result, resolved where possible."""
    container = OmegaConf.to_container(OmegaConf.create(cfg), resolve=False)
    for key in NOT_HASHED:
        *parents, leaf = key.split(".")
        node = container
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    try:
        return OmegaConf.to_container(OmegaConf.create(container), resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable extra key: hash its text instead
        return container


def config_hash(cfg: Mapping[str, Any] | DictConfig, length: int = 8) -> str:
    """A short, stable hash of :func:`hashed_config`."""
    text = json.dumps(hashed_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def family(residual: bool) -> str:
    """``resnet`` or ``plain``."""
    return "resnet" if residual else "plain"


def run_name(model: Mapping[str, Any], data: str, seed: int) -> str:
    """The readable part of a run's name, e.g. ``resnet56-B-fashion_mnist-seed1`` or
    ``plain34-smallstem-w8-fashion_mnist-seed0``."""
    residual = bool(model.get("residual", False))
    name = f"{family(residual)}{model.get('depth')}"
    imagenet_family = "stem" in model  # ResNet-18/34/50/101/152 and twins: 64 wide by default
    if imagenet_family and model.get("stem") != "imagenet":
        name += f"-{model.get('stem')}stem"
    if residual and model.get("shortcut", "A") != "A":
        name += f"-{model.get('shortcut')}"
    if model.get("width", 16) != (64 if imagenet_family else 16):
        name += f"-w{model.get('width')}"
    return f"{name}-{data}-seed{seed}"


def run_dir_name(data: str, _root_: DictConfig) -> str:
    """A run's directory name: readable part plus config hash (an OmegaConf resolver)."""
    return f"{run_name(_root_.model, data, _root_.seed)}-{config_hash(_root_)}"


def paper_warmup(depth: int, steps: int = 400, from_depth: int = 110) -> int:
    """The paper's warm-up length for a net of this depth: 400 iterations from 110 layers on."""
    return steps if int(depth) >= from_depth else 0


def register_resolvers() -> None:
    """Make ``${run_dir_name:...}``, ``${run_name:...}`` and ``${paper_warmup:...}`` available."""
    OmegaConf.register_new_resolver("run_dir_name", run_dir_name, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("paper_warmup", paper_warmup, replace=True)


def git_state(repo: Path | None = None) -> dict[str, Any]:
    """The commit the code came from and whether its tracked files had changes."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(device: str) -> dict[str, Any]:
    """Code version, package versions, machine and device of a run."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("degradation", "torch", "torchvision", "lightning", "hydra-core", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    torch = sys.modules.get("torch")
    if torch is not None:  # the full version says which build (e.g. +cu132)
        versions["torch"] = torch.__version__
        versions["cuda"] = torch.version.cuda
    return {
        "git": git_state(),
        "versions": versions,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device,
    }
