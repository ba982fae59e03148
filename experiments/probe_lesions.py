"""Lesion study of trained nets: delete blocks at test time (Veit et al. 2016; a Hydra app).

python experiments/probe_lesions.py dirs=[results/quick_amd_fp32] [depths=[44]] [out=DIR]
    [max_images=2000] [max_k=10] [draws=5] [seed=0] [export_weights=true]

Takes sweep or run directories, uses every finished 6n+2 run there (or those of ``depths``),
rebuilt from checkpoints/final.ckpt or an exported weights.pt, and writes lesions_single.csv,
lesions_random.csv, lesions.{png,pdf} and lesions.md into ``out`` (default: the first directory;
Hydra writes nothing of its own). ``export_weights=true`` also writes each run's final weights
alone to RUN_DIR/weights.pt, so the study can be re-run where checkpoints are not kept
(results/). A bad setting ends with one line on stderr and exit code 2.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from degradation.apps import count, dirs_of, listed, run_app
from degradation.config import register

log = logging.getLogger("probe_lesions")
register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe_lesions")
def main(cfg: DictConfig) -> None:
    """Delete blocks of every chosen trained net, singly and in random sets, and write the
    tables, the figure and the report section."""
    try:
        dirs, depths = dirs_of(cfg), listed(cfg, "depths", int)
        max_images, max_k, draws = (count(cfg, k) for k in ("max_images", "max_k", "draws"))
        seed = count(cfg, "seed", least=0)
        if not isinstance(cfg.export_weights, bool):
            raise ValueError(f"export_weights={cfg.export_weights!r}: must be true or false")

        from degradation.analysis import lesions
        from degradation.analysis.trained import trained_nets

        nets, dm = trained_nets(dirs, depths, export=cfg.export_weights)
        if not nets:
            raise ValueError("no finished 6n+2 run with weights found")
    except ValueError as err:
        log.error("%s", err)
        sys.exit(2)
    images, labels = dm.eval_sets["test"].tensors
    images = dm.preprocess(images[:max_images], train=False)
    labels = labels[:max_images]
    single, random = lesions.study(nets, images, labels, max_k, draws, seed, progress=log.info)
    out = Path(str(cfg.out)) if cfg.out is not None else dirs[0]
    lesions.write(single, random, out)
    log.info("lesions written to %s (lesions.md, .png, .pdf, lesions_single.csv, "
             "lesions_random.csv)", out)  # fmt: skip


if __name__ == "__main__":
    run_app(main, "probe_lesions")
