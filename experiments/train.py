"""Train one plain or residual net (a Hydra app; see conf/train.yaml for every option).

python experiments/train.py model=resnet model.depth=56 data=cifar10 trainer.max_steps=64000
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from degradation.data import DataUnavailableError
from degradation.runs import quiet_lightning, register_resolvers, train

log = logging.getLogger("train")
register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train the configured net and return its final test error."""
    quiet_lightning()
    run_dir = HydraConfig.get().runtime.output_dir
    log.info("run directory: %s", run_dir)
    try:
        summary = train(cfg, run_dir)
    except (DataUnavailableError, ValueError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else None
        log.error("%s", cause if isinstance(cause, (ValueError, DataUnavailableError)) else err)
        log.error("run not trained; its directory is %s", run_dir)
        sys.exit(2)
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
