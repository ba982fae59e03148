"""How a run is launched: in a child process of its own, on which rank, with which exit code,
and with what provenance (code version, packages, machine). No torch at import."""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from degradation.rundirs import LOG_FORMAT, RunLocked, read_summary, unwritable, write_summary

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    """Whether this process keeps a run's books: true unless it is a further process of a
    multi-process (DDP) training.

    Read from the environment that launchers set (torchrun: ``RANK``; Lightning's own launcher:
    ``LOCAL_RANK`` and ``NODE_RANK``; SLURM: ``SLURM_PROCID``), as Lightning does, before any
    Trainer exists.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env or "NODE_RANK" in env:
        return int(env.get("LOCAL_RANK", 0)) == 0 and int(env.get("NODE_RANK", 0)) == 0
    for name in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in env:
            return int(env[name]) == 0
    return True


class RunCrashed(RuntimeError):
    """The process that trained a run died (a signal: segfault, out-of-memory kill, ...)."""


# Exit codes of ``python -m degradation.launch``: a bad setting or missing data, and a run that
# another live process is training.
EXIT_BAD_SETTING, EXIT_LOCKED = 2, 3


def train_in_subprocess(
    cfg: DictConfig, run_dir: str | Path, record: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Train a run in a child process (``python -m degradation.launch RUN_DIR CONFIG [RECORD]``)
    and return its summary, so that a crash of the training (a segfault, an out-of-memory kill)
    ends that run only, not the sweep worker that hosts it and the runs beside it.

    The child reads the resolved configuration (and ``record``, the files it writes into the run
    once it holds the run's lock) from launch files in a temporary folder, so that nothing is
    written into the run directory before then. A bad setting (already reported by the child)
    raises ValueError, a run being trained elsewhere :class:`RunLocked`, a failure the child
    recorded RuntimeError; death by a signal marks the run ``crashed`` in its summary (the next
    launch resumes it) and raises :class:`RunCrashed`.
    """
    run_dir = Path(run_dir)
    with tempfile.TemporaryDirectory(prefix="degradation-launch-") as folder:
        launch = Path(folder) / "config.yaml"
        launch.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        command = [sys.executable, "-m", "degradation.launch", str(run_dir), str(launch)]
        if record:
            (Path(folder) / "record.json").write_text(json.dumps(dict(record)))
            command.append(str(Path(folder) / "record.json"))
        child = subprocess.Popen(command)
        try:
            returncode = child.wait()
        except KeyboardInterrupt:  # the child got it too: let it record "interrupted" and stop
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
    summary = read_summary(run_dir) or {}
    if returncode == 0 and summary:
        return summary
    if returncode == EXIT_BAD_SETTING:
        raise ValueError(f"{run_dir.name}: not trained (see the message above)")
    if returncode == EXIT_LOCKED:
        raise RunLocked(f"{run_dir.name}: being trained by another process; not started again")
    if returncode > 0:
        error = summary.get("error") if summary.get("status") == "failed" else None
        raise RuntimeError(f"{run_dir.name} failed: {error or f'exit code {returncode}'}")
    cause = f"killed by signal {signal.Signals(-returncode).name}"
    if summary.get("status") in (None, "running"):
        summary.update(status="crashed", error=f"training process {cause}")
        write_summary(run_dir, summary)
    raise RunCrashed(f"{run_dir.name}: training process {cause}")


# What a run's code is: the package, the configs, the entry points and the lock. Results,
# notebooks and documents changing beside them do not make the code "dirty".
CODE_PATHS = ("src", "conf", "experiments", "pyproject.toml", "constraints.txt")


def git_state(repo: Path | None = None) -> dict[str, Any]:
    """The commit the code came from and whether the code (:data:`CODE_PATHS`) had changes
    against it, new files not yet in git (and not ignored) included, with the changed files
    (at most 20)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
            cwd=repo, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
        state = {"commit": commit.stdout.strip(), "dirty": bool(changed)}
        if changed:
            state["changed"] = changed[:20]
        return state
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(device: str) -> dict[str, Any]:
    """Code version, package versions, machine and device of a run."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    packages = ("degradation", "torch", "torchvision", "pytorch-lightning", "hydra-core", "numpy")
    for package in packages:
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


def user_error(err: BaseException) -> str | None:
    """The message of an error the user fixes in the command line (a bad setting, missing data),
    also when Hydra's instantiation wraps it; None for any other error."""
    from hydra.errors import InstantiationException

    from degradation.data.base import DataUnavailableError

    if isinstance(err, InstantiationException) and isinstance(
        err.__cause__, (ValueError, DataUnavailableError)
    ):
        err = err.__cause__
    if isinstance(err, (ValueError, DataUnavailableError)):
        return str(err)
    return unwritable(err)


def _main(argv: Sequence[str]) -> int:
    """``python -m degradation.launch RUN_DIR CONFIG [RECORD]``: train the run from a resolved
    configuration file (how sweeps train each run in a process of its own); RECORD, a JSON
    object of file name -> text, is written into the run directory once the run is locked."""
    if len(argv) not in (2, 3):
        print(
            "usage: python -m degradation.launch RUN_DIR CONFIG_YAML [RECORD_JSON]", file=sys.stderr
        )
        return EXIT_BAD_SETTING
    run_dir, config = Path(argv[0]), Path(argv[1])
    record = json.loads(Path(argv[2]).read_text()) if len(argv) == 3 else None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=[logging.StreamHandler()])
    from degradation.runs import quiet_lightning, train

    quiet_lightning()
    try:
        train(OmegaConf.load(config), run_dir, record=record)
    except RunLocked as err:
        log.error("%s", err)
        return EXIT_LOCKED
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        log.error("%s (not trained)", message)
        return EXIT_BAD_SETTING
    return 0


if __name__ == "__main__":
    # Through the package's module, not this __main__ copy, so that classes named in configs
    # (degradation.runs.MetricsLogger) are the ones the code checks against.
    from degradation import launch

    sys.exit(launch._main(sys.argv[1:]))
