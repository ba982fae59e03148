"""Loss landscapes of trained nets along filter-normalised random directions (Li et al. 2018).

    python experiments/probe_landscape.py results/quick_amd_fp32 [--depths 44] [--out DIR]
        [--images 500] [--steps-1d 21] [--steps-2d 11] [--hessian-iterations 20]

Takes sweep or run directories, uses every finished 6n+2 run there (or those of ``--depths``),
rebuilt from checkpoints/final.ckpt or an exported weights.pt, and writes landscape_1d.csv,
landscape_2d.csv, landscape.csv (top Hessian eigenvalue), landscape.{png,pdf} and landscape.md
into --out (default: the first directory). The defaults take minutes on a 2-core CPU; on a GPU
try --images 5000 --steps-2d 41.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--depths", type=int, nargs="+", help="only runs of these depths")
    parser.add_argument("--out", type=Path, help="output directory (default: first directory)")
    parser.add_argument("--images", type=int, default=500, help="training images in the loss")
    parser.add_argument("--steps-1d", type=int, default=21)
    parser.add_argument("--steps-2d", type=int, default=11)
    parser.add_argument("--hessian-iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.images, args.steps_1d - 1, args.steps_2d - 1, args.hessian_iterations) < 1:
        parser.error("--images, --hessian-iterations must be positive, --steps-* at least 2")

    from degradation.analysis import landscape
    from degradation.analysis.trained import trained_nets

    try:
        nets, dm = trained_nets(args.dirs, args.depths)
    except ValueError as err:
        print(f"probe_landscape: error: {err}", file=sys.stderr)
        return 2
    if not nets:
        print("probe_landscape: error: no finished 6n+2 run with weights found", file=sys.stderr)
        return 2
    images, labels = dm.train_set.tensors
    x = dm.preprocess(images[: args.images], train=False)  # fixed subset, no augmentation
    y = labels[: args.images]
    one, two, numbers = landscape.study(
        nets, x, y, args.steps_1d, args.steps_2d, args.hessian_iterations, args.seed,
        progress=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    out = args.out or args.dirs[0]
    landscape.write(one, two, numbers, out)
    print(numbers.to_string(index=False))
    print(f"landscape: {out}/landscape.md, landscape.png, landscape.pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
