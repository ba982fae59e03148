"""Turn one or more sweep directories into figures, a table and a report with a verdict.

    python experiments/analyze.py outputs/sweeps/quick [--out DIR] [--probes DIR ...]

By default everything is written into the first sweep directory. The report opens with the
claims ledger; claims that need probes (init_probes.csv, lesions_single.csv, landscape.csv) find
them in the output directory or in the --probes directories.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import pandas as pd

from degradation.report import AnalysisIncomplete, write_analysis
from degradation.results import collect


def unwritable_folder(folder: Path) -> str | None:
    """Why nothing can be written into ``folder`` (made if missing), or None if it can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--out", type=Path, help="output directory (default: first sweep dir)")
    parser.add_argument(
        "--probes",
        type=Path,
        nargs="*",
        default=[],
        help="directories with probe outputs (probe_init, probe_lesions, ...)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.sweep_dirs[0]
    try:
        runs, metrics = collect(*args.sweep_dirs)  # reads only: what there is to analyse
        problem = unwritable_folder(out)  # before the long computation, not after it
        if problem:
            print(f"analyze: error: cannot write into {out} ({problem}): choose another "
                  "output directory with --out DIR", file=sys.stderr)  # fmt: skip
            return 2
        command = "python experiments/analyze.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
        )
        written, failed = write_analysis(runs, metrics, out, command, args.probes), None
    except AnalysisIncomplete as err:  # the report is written, without the failed questions
        written, failed = err.written, err
    except ValueError as err:
        print(f"analyze: error: {err}", file=sys.stderr)
        return 2
    print(runs[["run", "status", "steps", "final_train_error", "final_test_error"]].to_string())
    if "ledger" in written:
        ledger = pd.read_csv(written["ledger"])
        print("\nClaims ledger:")
        for _, row in ledger.iterrows():
            print(f"  {row['#']:>2}. {row['claim']}: {row['verdict']}")
    for name, path in written.items():
        print(f"{name}: {path}")
    if failed is not None:
        print(f"analyze: error: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
