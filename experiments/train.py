"""Train one plain or residual net (a Hydra app; see conf/train.yaml for every option).

python experiments/train.py model=resnet model.depth=56 data=cifar10 trainer.max_steps=64000

Launching the same command (or sweep) again skips runs that finished or diverged and resumes runs
that were stopped. A bad setting ends the run with one message on stderr and exit code 2; in a
sweep, the failing job is reported at the end and the other jobs go on.
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from degradation.rundirs import DONE, read_summary, register_resolvers

log = logging.getLogger("train")
register_resolvers()


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
    from degradation.data import DataUnavailableError
    from degradation.runs import quiet_lightning, train

    quiet_lightning()
    log.info("run directory: %s", run_dir)
    try:
        summary = train(cfg, run_dir)
    except (DataUnavailableError, ValueError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else None
        message = cause if isinstance(cause, (ValueError, DataUnavailableError)) else err
        log.error("%s", message)
        log.error("run not trained; its directory is %s", run_dir)
        if multirun:  # let Hydra record the failed job and go on with the others
            raise
        sys.exit(2)
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


if __name__ == "__main__":
    main()
