"""Loss landscapes of trained nets along filter-normalised random directions (Li et al. 2018;
a Hydra app).

python experiments/probe_landscape.py dirs=[results/quick_amd_fp32] [depths=[44]] [out=DIR]
    [images=500] [steps_1d=21] [steps_2d=11] [hessian_iterations=20] [seed=0]

Takes sweep or run directories, uses every finished 6n+2 run there (or those of ``depths``),
rebuilt from checkpoints/final.ckpt or an exported weights.pt, and writes landscape_1d.csv,
landscape_2d.csv, landscape.csv (top Hessian eigenvalue), landscape.{png,pdf} and landscape.md
into ``out`` (default: the first directory; Hydra writes nothing of its own). The defaults take
minutes on a 2-core CPU; on a GPU try images=5000 steps_2d=41. A bad setting ends with one line
on stderr and exit code 2.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from degradation.apps import count, dirs_of, listed, run_app
from degradation.config import register

log = logging.getLogger("probe_landscape")
register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe_landscape")
def main(cfg: DictConfig) -> None:
    """Draw the 1-D and 2-D loss surfaces and the top Hessian eigenvalue of every chosen
    trained net, and write the tables, the figure and the report section."""
    try:
        dirs, depths = dirs_of(cfg), listed(cfg, "depths", int)
        images, iterations = count(cfg, "images"), count(cfg, "hessian_iterations")
        steps_1d, steps_2d = count(cfg, "steps_1d", least=2), count(cfg, "steps_2d", least=2)
        seed = count(cfg, "seed", least=0)

        from degradation.analysis import landscape
        from degradation.analysis.trained import trained_nets

        nets, dm = trained_nets(dirs, depths)
        if not nets:
            raise ValueError("no finished 6n+2 run with weights found")
    except ValueError as err:
        log.error("%s", err)
        sys.exit(2)
    x, y = dm.train_set.tensors
    x = dm.preprocess(x[:images], train=False)  # a fixed subset, no augmentation
    y = y[:images]
    one, two, numbers = landscape.study(nets, x, y, steps_1d, steps_2d, iterations, seed,
                                        progress=log.info)  # fmt: skip
    out = Path(str(cfg.out)) if cfg.out is not None else dirs[0]
    landscape.write(one, two, numbers, out)
    print(numbers.to_string(index=False))
    log.info("landscape written to %s (landscape.md, .png, .pdf, landscape.csv, "
             "landscape_1d.csv, landscape_2d.csv)", out)  # fmt: skip


if __name__ == "__main__":
    run_app(main, "probe_landscape")
