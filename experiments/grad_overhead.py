"""Measure what logging gradient norms costs: the same training with and without it.

    python experiments/grad_overhead.py [--repeats 2] [--steps 150] [--out results/benchmarks]

Runs experiments/train.py (plain-44, width 8, Fashion-MNIST) alternately with the default
gradient-norm logging and with it switched off, and compares training time (the summary's wall
time: fit plus one final evaluation, identical in both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def one_run(gradients: bool, steps: int, workdir: Path, index: int) -> dict:
    run_dir = workdir / f"run{index}-{'on' if gradients else 'off'}"
    overrides = [
        "model=plain",
        "model.depth=44",
        "model.width=8",
        f"trainer.max_steps={steps}",
        f"eval_every={10 * steps}",
        "callbacks.progress.refresh_rate=0",
        f"hydra.run.dir={run_dir}",
    ]
    if not gradients:
        overrides.append("callbacks.gradients=null")
    subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "train.py"), *overrides],
        check=True,
        capture_output=True,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"gradients": gradients, "wall_time_s": summary["wall_time_s"], "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for gradients in (True, False) if i % 2 == 0 else (False, True):
                rows.append(one_run(gradients, args.steps, Path(tmp), len(rows)))
                print(rows[-1], flush=True)
    runs = pd.DataFrame(rows)
    mean = runs.groupby("gradients")["wall_time_s"].mean()
    overhead = mean[True] / mean[False] - 1
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "gradient_norm_overhead.csv", index=False)
    (args.out / "gradient_norm_overhead.md").write_text(
        "# Cost of logging gradient norms (every 50 iterations, the default)\n\n"
        f"plain-44, width 8, Fashion-MNIST, {args.steps} iterations per run, {args.repeats} runs "
        "each way, alternating.\n\n"
        + runs.to_markdown(index=False)
        + f"\n\nMean wall time with logging {mean[True]:.1f} s, without {mean[False]:.1f} s: "
        f"overhead {100 * overhead:+.1f}%.\n"
    )
    print(f"overhead {100 * overhead:+.1f}% -> {args.out / 'gradient_norm_overhead.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
