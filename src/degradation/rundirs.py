"""Where a run lives and how far it got, without importing torch (so finished runs skip fast).

A run's directory name is a function of its configuration: a readable part (family, depth,
shortcut, width, data set, seed) and a short hash of every key that can change what the run
computes. Launching the same sweep again therefore finds each run's directory, and its
``summary.json`` says whether the run finished, diverged, failed, or has to resume.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from degradation import designs

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
FINAL_CHECKPOINT = "final.ckpt"
# The run's log (appended by every attempt), and how its lines look.
LOG_FILE = "train.log"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
# The checkpoint before last.ckpt, kept as a fallback in case last.ckpt is unreadable.
PREVIOUS_CHECKPOINT = "previous.ckpt"
# Held (an OS file lock) by the process that trains the run; the kernel lets go when it dies.
LOCK_FILE = ".lock"
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
# Keys added after runs were first named: left out of a run's hash while they hold this value,
# so earlier run directories keep their names (the design options' come from their table).
HASH_DEFAULTS: dict[str, Any] = {
    "trainer.num_nodes": 1,
    "trainer.strategy": "auto",
    "trainer.sync_batchnorm": False,
    "trainer.deterministic": None,
    "trainer.gradient_clip_val": None,
    "optimizer.nesterov": False,
    **designs.HASH_DEFAULTS,
    "data.train_size": 0,
    "schedule.budget": None,
    "schedule.evaluations": 8,
}


def unwritable(err: BaseException) -> str | None:
    """For an error that says a folder cannot be written (read-only, not ours), one line that
    names it and says what to do; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    where = Path(err.filename).parent if err.filename else "a run directory"
    if err.filename and Path(err.filename).is_dir():
        where = err.filename
    what = "cannot write into" if err.errno == errno.EROFS else "cannot write into (or read)"
    return (
        f"{what} {where} ({err.strerror}): train into a folder you can write to "
        "(hydra.run.dir=DIR, or hydra.sweep.dir=DIR for a sweep)"
    )


class RunLocked(RuntimeError):
    """Another live process is training this run."""


class RunLock:
    """An exclusive lock on a run directory while one process trains it (``with RunLock(d):``).

    A second launch of the same run raises :class:`RunLocked` naming the process that holds it.
    The lock is the kernel's (``flock`` on ``RUN_DIR/.lock``): a process that dies, however it
    dies, releases it. Acquiring retries for ``wait`` seconds, so that a momentary probe
    (:func:`lock_is_held`, e.g. by an analysis) does not turn a launch away.
    """

    def __init__(self, run_dir: str | Path, wait: float = 1.0) -> None:
        self.run_dir, self.wait = Path(run_dir), wait
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                summary = read_summary(self.run_dir) or {}
                host = (summary.get("provenance") or {}).get("host", "?")
                raise RunLocked(
                    f"{self.run_dir} is being trained by another process (pid "
                    f"{summary.get('pid', '?')} on {host}); not starting a second one. Wait for "
                    "it, or stop it and launch again to resume."
                ) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_is_held(run_dir: str | Path) -> bool | None:
    """Whether a live process holds the run's lock; None when that cannot be told (no lock file,
    or one that cannot be opened)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing also lets go of the probe's shared lock
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: str | Path, summary: Mapping[str, Any] | None) -> str:
    """A run's status, telling a run that is training now (``running``) from one whose process
    died without a word (``crashed``: killed, out of memory, segfault); ``incomplete`` when it
    has no summary."""
    status = (summary or {}).get("status")
    if status is None:
        return "incomplete"
    if status != "running":
        return str(status)
    held = lock_is_held(run_dir)
    if held is None:  # no lock to ask: the pid, where the run was started on this machine
        host = ((summary or {}).get("provenance") or {}).get("host")
        pid = (summary or {}).get("pid")
        if host == socket.gethostname() and isinstance(pid, int):
            held = pid_alive(pid)
        else:
            return "running"
    return "running" if held else "crashed"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, so readers never see half a file; a
    failed write (a full disk) removes the temporary file and leaves ``path`` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary.json`` atomically."""
    write_atomic(Path(run_dir) / SUMMARY_FILE, json.dumps(dict(summary), indent=2) + "\n")


_reported: set[Path] = set()


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary, or None if it has none (yet) or it is unreadable; an unreadable one
    is named in one line on stderr (once per process)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_bytes())
        if not isinstance(summary, dict):
            raise ValueError(f"a JSON {type(summary).__name__}, not an object")
        return summary
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError included
        if path not in _reported:
            _reported.add(path)
            reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
            print(f"warning: {path} is unreadable ({reason}); read as missing", file=sys.stderr)
        return None


# Lightning's classes as runs named before the switch from the umbrella ``lightning`` package to
# ``pytorch-lightning`` spelled them (the same classes): hashed the old way, so names stay.
TARGET_ALIASES = {"pytorch_lightning.": "lightning.pytorch."}


def _hashed_target(target: Any) -> Any:
    for new, old in TARGET_ALIASES.items():
        if isinstance(target, str) and target.startswith(new):
            return old + target.removeprefix(new)
    return target


def hashed_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The part of a configuration that determines the result, resolved where possible."""
    container = OmegaConf.to_container(OmegaConf.create(cfg), resolve=False)
    trainer = container.get("trainer") if isinstance(container, dict) else None
    if isinstance(trainer, dict) and "_target_" in trainer:
        trainer["_target_"] = _hashed_target(trainer["_target_"])
    drop = [(key, None) for key in NOT_HASHED] + list(HASH_DEFAULTS.items())
    for key, default in drop:
        *parents, leaf = key.split(".")
        node = container
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and (key in NOT_HASHED or node[leaf] == default):
            node.pop(leaf)
            if not node and len(parents) == 1:
                container.pop(parents[0])  # a group added later, left with its defaults only
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


def is_dense(model: Mapping[str, Any]) -> bool:
    """Whether a model configuration builds a DenseNet (``model=densenet``)."""
    return str(model.get("_target_", "")).endswith(".densenet") or "growth_rate" in model


def model_family(model: Mapping[str, Any]) -> str:
    """``resnet``, ``plain`` or ``dense``: the family of a model configuration."""
    return "dense" if is_dense(model) else family(bool(model.get("residual", False)))


def model_fields(model: Mapping[str, Any]) -> dict[str, Any]:
    """The run-table fields of a model configuration beyond depth, width, shortcut and norm:
    ``family`` and the design columns of :mod:`degradation.designs` (None where the net has no
    such option)."""
    fam = model_family(model)
    cifar = fam != "dense" and "stem" not in model  # the CIFAR family (not ImageNet, not dense)
    return {
        "family": fam,
        **designs.design_fields(model, fam == "resnet", cifar),
        **designs.dense_fields(model, fam == "dense"),
    }


def run_name(model: Mapping[str, Any], data: str, seed: int, budget: int | None = None) -> str:
    """The readable part of a run's name, e.g. ``resnet56-B-fashion_mnist-seed1``,
    ``plain8-w8-fashion_mnist-budget1500-seed0`` (``schedule.budget=1500``),
    ``plain34-smallstem-w8-fashion_mnist-seed0``, ``plain20-nonorm-cifar10-seed0``,
    ``resnet164-B-preact-bottleneck-cifar10-seed0``, ``resnet110-scaling-cifar10-seed0``,
    ``resnet20-nonorm-fixup-w8-fashion_mnist-seed0`` or ``dense100-cifar10-seed0``."""
    tail = f"-{data}" + ("" if budget is None else f"-budget{budget}") + f"-seed{seed}"
    if is_dense(model):
        norm = designs.name_parts({"norm": model.get("norm", "batch")}, residual=False)
        return f"dense{model.get('depth')}{designs.dense_name_parts(model)}{norm}{tail}"
    residual = bool(model.get("residual", False))
    name = f"{family(residual)}{model.get('depth')}"
    imagenet_family = "stem" in model  # ResNet-18/34/50/101/152 and twins: 64 wide by default
    if imagenet_family and model.get("stem") != "imagenet":
        name += f"-{model.get('stem')}stem"
    name += designs.name_parts(model, residual)
    if model.get("width", 16) != (64 if imagenet_family else 16):
        name += f"-w{model.get('width')}"
    return name + tail


def run_dir_name(data: str, _root_: DictConfig) -> str:
    """A run's directory name: readable part plus config hash (an OmegaConf resolver)."""
    budget = OmegaConf.select(_root_, "schedule.budget", default=None)
    return f"{run_name(_root_.model, data, _root_.seed, budget)}-{config_hash(_root_)}"
