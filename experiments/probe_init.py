"""Init-time probes of plain and residual nets with and without BN (a Hydra app, no training).

python experiments/probe_init.py [depths=[8,20,56,110]] [norms=[batch,none]] [hydra.run.dir=DIR]

Writes init_probes.{csv,png,pdf,md} and init_probe_layers.csv into the run directory
(default outputs/probes/init) and prints each net's measures as it goes.
"""

import logging
import sys

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from degradation.config import register

log = logging.getLogger("probe_init")
register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe_init")
def main(cfg: DictConfig) -> None:
    """Probe every family x norm x depth on one batch of real images and write the results."""
    from pathlib import Path

    from degradation.analysis import init_probes
    from degradation.data import DataUnavailableError
    from degradation.designs import CHOICES, check_depth

    try:
        for depth in cfg.depths:
            check_depth(depth)
        bad = [n for n in cfg.norms if n not in CHOICES["norm"]] + [
            f for f in cfg.families if f not in ("plain", "resnet")
        ]
        if bad or cfg.num_images < 2:
            raise ValueError(f"unknown norms/families {bad} or num_images < 2")
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (ValueError, DataUnavailableError) as err:
        log.error("%s", err)
        sys.exit(2)
    images, labels = datamodule.eval_sets["test"].tensors
    x = datamodule.preprocess(images[: cfg.num_images], train=False)
    y = labels[: cfg.num_images]
    nets, layers = init_probes.run_probes(
        x, y, list(cfg.depths), list(cfg.families), list(cfg.norms), cfg.width,
        datamodule.num_classes, cfg.eps, cfg.seed, progress=log.info,
    )  # fmt: skip
    out = Path(HydraConfig.get().runtime.output_dir)
    init_probes.write(nets, layers, out, tuple(cfg.formats))
    log.info("init probes written to %s (init_probes.md, .png, .pdf, .csv)", out)


if __name__ == "__main__":
    main()
