"""Lesion study of trained nets: delete blocks at test time (Veit et al. 2016).

    python experiments/probe_lesions.py results/quick_amd_fp32 [--depths 44] [--out DIR]
        [--max-images 2000] [--max-k 10] [--draws 5] [--export-weights]

Takes sweep or run directories, uses every finished 6n+2 run there (or those of ``--depths``),
rebuilt from checkpoints/final.ckpt or an exported weights.pt, and writes lesions_single.csv,
lesions_random.csv, lesions.{png,pdf} and lesions.md into --out (default: the first directory).
``--export-weights`` also writes each run's final weights alone to RUN_DIR/weights.pt, so the
study can be re-run where checkpoints are not kept (results/).
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
    parser.add_argument("--max-images", type=int, default=2000, help="test images used")
    parser.add_argument("--max-k", type=int, default=10, help="most blocks deleted at once")
    parser.add_argument("--draws", type=int, default=5, help="random draws per k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-weights", action="store_true")
    args = parser.parse_args(argv)
    if args.max_images < 1 or args.max_k < 1 or args.draws < 1:
        parser.error("--max-images, --max-k and --draws must be positive")

    from degradation.analysis import lesions
    from degradation.analysis.trained import trained_nets

    try:
        nets, dm = trained_nets(args.dirs, args.depths, export=args.export_weights)
    except ValueError as err:
        print(f"probe_lesions: error: {err}", file=sys.stderr)
        return 2
    if not nets:
        print("probe_lesions: error: no finished 6n+2 run with weights found", file=sys.stderr)
        return 2
    images, labels = dm.eval_sets["test"].tensors
    images = dm.preprocess(images[: args.max_images], train=False)
    labels = labels[: args.max_images]
    single, random = lesions.study(nets, images, labels, args.max_k, args.draws, args.seed,
                                   progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    out = args.out or args.dirs[0]
    lesions.write(single, random, out)
    print(f"lesions: {out}/lesions.md, lesions.png, lesions.pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
