"""Train one plain or residual net (a Hydra app; see conf/train.yaml for every option).

python experiments/train.py model=resnet model.depth=56 data=cifar10 trainer.max_steps=64000

Launching the same command (or sweep) again skips runs that finished or diverged and resumes runs
that were stopped; a run that another live process is training is refused. A bad setting (a
value of the wrong type, a key that does not exist, a depth that cannot be built) ends the run
with one message on stderr and exit code 2, and leaves no run directory behind; in a sweep, the
failing job is reported at the end and the other jobs go on.
"""

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from degradation.config import check_keys, config_error_line, per_job_overrides, register
from degradation.launch import RunCrashed, is_rank_zero, train_in_subprocess, user_error
from degradation.rundirs import (
    CONFIG_FILE,
    DONE,
    LOCK_FILE,
    LOG_FILE,
    RunLocked,
    lock_is_held,
    read_summary,
    unwritable,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

log = logging.getLogger("train")
register()


def remove_if_fresh(run_dir: str) -> None:
    """Delete a run directory that holds nothing but what a launch refused for a bad setting or
    missing data may leave (the folder Hydra made, the lock, Hydra's record, the resolved config,
    the log), unless a live process holds it; anything else in it keeps it."""
    path = Path(run_dir)
    launch_files = {".hydra", LOCK_FILE, CONFIG_FILE, LOG_FILE}
    fresh = path.is_dir() and all(p.name in launch_files for p in path.iterdir())
    if fresh and not lock_is_held(path):
        shutil.rmtree(path, ignore_errors=True)


def hydra_record(cfg: DictConfig) -> dict[str, str]:
    """Hydra's record of this job (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``),
    written into the run directory by the process that trains it, once it holds the run."""
    hydra_cfg = HydraConfig.get()
    return {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(list(hydra_cfg.overrides.task)),
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train the configured net (unless it is done already) and return its final test error."""
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    summary = read_summary(run_dir) or {}
    if summary.get("status") in DONE:
        log.info("skipping %s: already %s (delete its summary.json to train it again)",
                 run_dir, summary["status"])  # fmt: skip
        return summary.get("final_test_error")

    # Imported only when there is training to do: a finished run is skipped in about a second.
    from degradation.runs import quiet_lightning, train

    quiet_lightning()
    rank_zero = is_rank_zero()
    if rank_zero:
        log.info("run directory: %s", run_dir)
    try:
        check_keys(cfg)
        # In a sweep each run trains in a process of its own: a crash (segfault, out-of-memory
        # kill) ends that run only, and the sweep goes on.
        record = hydra_record(cfg)
        if multirun:
            summary = train_in_subprocess(cfg, run_dir, record)
        else:
            summary = train(cfg, run_dir, record)
    except RunCrashed as err:
        log.error("%s; launch again to resume it", err)
        raise
    except RunLocked as err:
        log.error("%s", err)
        if multirun:
            raise
        sys.exit(2)
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        if not multirun:  # in a sweep the run's own process has said it already
            log.error("%s (not trained)", message)
        remove_if_fresh(run_dir)
        if multirun:  # let Hydra record the failed job and go on with the others
            raise
        sys.exit(2)
    if not rank_zero:
        return None
    if summary["status"] == "diverged":
        log.warning("%s diverged at step %s", summary["model"], summary.get("diverged_at_step"))
    else:
        log.info(
            "finished %s: %d steps in %.0f s, train error %.2f%%, test error %.2f%%",
            summary["model"],
            summary["steps"],
            summary["wall_time_s"],
            100 * summary.get("final_train_error", float("nan")),
            100 * summary.get("final_test_error", float("nan")),
        )
    log.info("metrics and summary in %s", run_dir)
    return summary.get("final_test_error")


def cli() -> None:
    """Run :func:`main` with errors in one line: a configuration that cannot be composed exits
    with code 2, a failed job of a sweep (reported above) with code 1. HYDRA_FULL_ERROR=1 shows
    the tracebacks instead."""
    user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # errors reach us as exceptions, not printed by Hydra
    # every job of a sweep composed (and so checked) on its own, with its own choices
    sys.argv[1:] = per_job_overrides(sys.argv[1:], CONF_DIR)
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        if user_wants_traces:
            raise
        print(config_error_line(err), file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if user_wants_traces:
            raise
        message = unwritable(err)
        if message is not None:  # a read-only run or sweep directory
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        first = (str(err).strip().splitlines() or [""])[0]
        print(f"error: {type(err).__name__}: {first}", file=sys.stderr)
        sys.exit(1)
    finally:
        if not user_wants_traces:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    cli()
