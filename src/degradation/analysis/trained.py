"""Trained nets of a sweep, rebuilt for probes (lesions, landscapes)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from degradation.data import DataUnavailableError
from degradation.diagnostics import export_weights, load_run
from degradation.models import CifarNet
from degradation.results import collect


def trained_nets(
    dirs: Sequence[Path], depths: Sequence[int] | None = None, export: bool = False
) -> tuple[dict[str, CifarNet], object]:
    """Every finished 6n+2 run with BN under ``dirs`` (of ``depths`` if given), named
    ``<family>-<depth> seed <seed>``, with the data module of the first; runs without weights
    are skipped with a line on stderr. ``export`` writes each run's ``weights.pt`` first."""
    runs, _ = collect(*dirs)
    runs = runs[runs["status"] == "finished"]
    if "normalization" in runs:  # the paper's BN nets
        runs = runs[runs["normalization"].isna()]
    if depths:
        runs = runs[runs["depth"].isin(depths)]
    nets, datamodule = {}, None
    for _, run in runs.iterrows():
        try:
            if export:
                export_weights(run["path"])
            net, dm = load_run(run["path"])
        except (FileNotFoundError, DataUnavailableError) as err:
            print(f"skipping {run['run']}: {err}", file=sys.stderr)
            continue
        if not isinstance(net, CifarNet):
            print(f"skipping {run['run']}: not a 6n+2 net", file=sys.stderr)
            continue
        datamodule = datamodule or dm
        name = f"{run['family']}-{run['depth']} seed {run['seed']}"
        nets[run["run"] if name in nets else name] = net  # a second such net: its run's name
    if datamodule is not None:
        datamodule.setup("fit")
    return nets, datamodule
