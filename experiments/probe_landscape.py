"""Loss landscapes of trained nets along filter-normalised random directions, and their
convexity as Li et al. (2018) map it (a Hydra app).

python experiments/probe_landscape.py dirs=[results/quick_amd_fp32] [depths=[44]] [out=DIR]
    [images=500] [steps_1d=21] [steps_2d=11] [pairs=3] [eig_steps=5] [eig_images=64]
    [eig_pairs=1] [hessian_iterations=15] [tolerance=0.001] [seed=0]

Takes sweep or run directories, uses every finished 6n+2 run there (or those of ``depths``),
rebuilt from checkpoints/final.ckpt or an exported weights.pt, and writes landscape_1d.csv,
landscape_2d.csv (every pair of directions), landscape_eigs.csv (lambda_min, lambda_max and
their ratio over the grid), landscape_pairs.csv (non-convexity counts per pair), landscape.csv
(one row per net), landscape.{png,pdf} and landscape.md into ``out`` (default: the first
directory; Hydra writes nothing of its own). Cost per net: pairs x (2 steps_1d + steps_2d^2)
forward passes on ``images`` images and eig_pairs x eig_steps^2 x (hessian_iterations + 1)
Hessian-vector products on ``eig_images`` images; with the defaults, for a width-8 depth-44
net on Fashion-MNIST, see conf/probe_landscape.yaml. A bad setting ends with one line on
stderr and exit code 2.
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


def fraction(cfg: DictConfig, key: str) -> float:
    """A non-negative number setting."""
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{key}={value!r}: must be a number, at least 0")
    return float(value)


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe_landscape")
def main(cfg: DictConfig) -> None:
    """Draw the 1-D and 2-D loss surfaces of every chosen trained net along several pairs of
    directions, map the Hessian's eigenvalue ratio over a grid, count non-convexities, and
    write the tables, the figure and the report section."""
    try:
        dirs, depths = dirs_of(cfg), listed(cfg, "depths", int)
        images, iterations = count(cfg, "images"), count(cfg, "hessian_iterations")
        steps_1d, steps_2d = count(cfg, "steps_1d", least=2), count(cfg, "steps_2d", least=2)
        pairs, eig_steps = count(cfg, "pairs"), count(cfg, "eig_steps")
        eig_images, eig_pairs = count(cfg, "eig_images"), count(cfg, "eig_pairs", least=0)
        tolerance, seed = fraction(cfg, "tolerance"), count(cfg, "seed", least=0)
        if eig_pairs > pairs:
            raise ValueError(f"eig_pairs={eig_pairs}: at most pairs={pairs}")

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
    result = landscape.study(
        nets, x, y, steps_1d, steps_2d, iterations, seed, pairs=pairs, eig_steps=eig_steps,
        eig_images=eig_images, eig_pairs=eig_pairs, tolerance=tolerance, progress=log.info,
    )  # fmt: skip
    out = Path(str(cfg.out)) if cfg.out is not None else dirs[0]
    landscape.write(result, out)
    print(result.numbers.to_string(index=False))
    log.info("landscape written to %s (landscape.md, .png, .pdf, landscape.csv, "
             "landscape_1d.csv, landscape_2d.csv, landscape_eigs.csv, landscape_pairs.csv)",
             out)  # fmt: skip


if __name__ == "__main__":
    run_app(main, "probe_landscape")
