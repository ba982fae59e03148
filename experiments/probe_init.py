"""Init-time probes of plain and residual nets with and without BN (a Hydra app, no training).

python experiments/probe_init.py [depths=[8,20,56,110]] [norms=[batch,none]] [seeds=[0,1,2]]
    [hydra.run.dir=DIR]

Writes init_probes.{csv,png,pdf,md}, init_probe_layers.csv and init_probe_lines.csv (the line
correlation against distance) into the run directory (default outputs/probes/init) and prints
each net's measures as it goes. ``seed=N`` alone (the earlier single init seed) probes seed N.
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


def init_seeds(cfg: DictConfig) -> list[int]:
    """The init seeds to probe: ``seeds``, or ``[seed]`` when only ``seed`` is given on the
    command line (``seed`` is otherwise only the data config's shuffle seed)."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    if "seed" in given and "seeds" in given:
        raise ValueError("give the init seeds as seeds=[...] or one as seed=N, not both")
    seeds = [int(cfg.seed)] if "seed" in given else [int(s) for s in cfg.seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    return seeds


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe_init")
def main(cfg: DictConfig) -> None:
    """Probe every family x norm x depth x init seed on one batch of real images; write it all."""
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
        seeds = init_seeds(cfg)
        if not 1 <= cfg.line.images <= cfg.num_images or cfg.line.points < 2:
            raise ValueError("line.images must be in 1..num_images and line.points at least 2")
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
    nets, layers, lines = init_probes.run_probes(
        x, y, list(cfg.depths), list(cfg.families), list(cfg.norms), cfg.width,
        datamodule.num_classes, cfg.eps, seeds, log.info, cfg.line.images, cfg.line.points,
        cfg.line.span,
    )  # fmt: skip
    out = Path(HydraConfig.get().runtime.output_dir)
    init_probes.write(nets, layers, out, tuple(cfg.formats), lines)
    log.info("init probes written to %s (init_probes.md, .png, .pdf, .csv, lines .csv)", out)


if __name__ == "__main__":
    main()
