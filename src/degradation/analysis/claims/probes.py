"""The claims decided by probe outputs found beside a sweep (``experiments/probe_*.py``): BN
and gradients at initialisation, shattered gradients, lesions and the loss landscape; and where
those outputs are found."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from degradation.analysis.base import find_files, read_table
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    PROBES,
    SUPPORTED,
    Finding,
    Sweep,
    claim,
)
from degradation.analysis.stats import points

EXPLODE_LOG = 1.0  # init gradients 10x larger (or smaller) at the input than at the output
LESION_SMALL, LESION_LARGE = 0.05, 0.20  # median error increase after one deletion
CORRELATION_MARGIN = 0.1  # mean gradient-correlation advantage of residual nets
SHARPNESS_RATIO = 2.0  # one top Hessian eigenvalue at least twice the other


def find_probes(dirs: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Probe outputs found in these directories (of each kind the first readable one: a
    damaged table is named and passed over)."""
    found = {}
    for key, probe in PROBES.items():
        frames = (read_table(path) for path in find_files(dirs, probe.table))
        frame = next((f for f in frames if f is not None), None)
        if frame is not None:
            found[key] = frame
    return found


def probe_figures(dirs: Sequence[str | Path]) -> list[Path]:
    """The figure of each probe whose table :func:`find_probes` uses."""
    figures = []
    for probe in PROBES.values():
        table = next(find_files(dirs, probe.table), None)
        if table is not None and (table.parent / probe.figure).is_file():
            figures.append(table.parent / probe.figure)
    return figures


@claim(
    5,
    "Without BN, deep plain nets' gradients vanish or explode at initialisation, and BN "
    "prevents it",
    "common explanation",
    also=(
        (
            "BN itself makes gradients explode with depth at initialisation in plain nets",
            "Yang et al. 2019",
        ),
    ),
    figure="init_probes.png",
    probe="init_probes",
    definition="Exploding / vanishing at initialisation: the first 3x3 layer's gradient norm at "
    f"least {10**EXPLODE_LOG:.0f}x the last layer's, or at most 1/{10**EXPLODE_LOG:.0f} of it "
    "(init_probes, deepest probed depth).",
)
def bn_init(s: Sweep) -> tuple[Finding, Finding]:
    nets = s.probes["init_probes"]
    plain = nets[nets["family"] == "plain"]
    if plain.empty:
        why = "no plain nets among the init probes"
        return Finding(why=why), Finding(why=why)
    return _bn_prevents(plain), _bn_explodes(plain)


def _bn_prevents(plain: pd.DataFrame) -> Finding:
    deepest = int(plain["depth"].max())
    at = plain[plain["depth"] == deepest].groupby("norm")["grad_log_ratio"].mean()
    if not {"batch", "none"} <= set(at.index):
        return Finding(why="needs plain nets probed with and without BN")
    none, batch = float(at["none"]), float(at["batch"])
    measured = (
        f"plain-{deepest} log10(first/last layer gradient): without BN "
        f"{none:+.2f}, with BN {batch:+.2f}"
    )
    if abs(batch) >= EXPLODE_LOG:
        return Finding(CONTRADICTED, measured, "with BN the gradients are far from balanced")
    if abs(none) >= EXPLODE_LOG:
        return Finding(SUPPORTED, measured)
    return Finding(
        measured=measured, why="neither net is out of balance at the deepest probed depth"
    )


def _bn_explodes(plain: pd.DataFrame) -> Finding:
    with_bn = (
        plain[plain["norm"] == "batch"].groupby("depth", as_index=False)["grad_log_ratio"].mean()
    )
    if len(with_bn) < 2:
        return Finding(why="needs plain BN nets probed at two depths")
    first, last = with_bn.iloc[0], with_bn.iloc[-1]
    measured = (
        f"plain BN nets, log10(first/last layer gradient): depth {int(first['depth'])} "
        f"{first['grad_log_ratio']:+.2f}, depth {int(last['depth'])} "
        f"{last['grad_log_ratio']:+.2f}"
    )
    grows = last["grad_log_ratio"] - first["grad_log_ratio"] >= EXPLODE_LOG
    explodes = grows and last["grad_log_ratio"] >= EXPLODE_LOG
    return Finding(SUPPORTED if explodes else CONTRADICTED, measured)


@claim(
    8,
    "Residual nets behave like ensembles: deleting one block barely hurts them and ruins a "
    "plain net",
    "Veit et al. 2016",
    figure="lesions.png",
    probe="lesions_single",
    definition="Lesions: median test-error increase after deleting one shape-keeping block; "
    f"small at most {100 * LESION_SMALL:.0f} points, ruinous at least "
    f"{100 * LESION_LARGE:.0f} points.",
)
def lesions(s: Sweep) -> Finding:
    single = s.probes["lesions_single"]
    rise, key = {}, "net" if "net" in single else "family"
    for family, nets in single.groupby("family"):
        per_net = []
        for _, group in nets.groupby(key):
            base = group.loc[group["block"] == 0, "test_error"].mean()
            keep = group[(group["block"] > 0) & ~group["downsampling"].astype(bool)]
            per_net.append(float(keep["test_error"].median() - base))
        rise[family] = float(np.median(per_net))
    if not {"plain", "resnet"} <= set(rise):
        return Finding(why="needs lesions of a plain and a residual net")
    measured = (
        f"median test-error increase after one deletion: residual "
        f"{points(rise['resnet'])}, plain {points(rise['plain'])}"
    )
    if rise["resnet"] <= LESION_SMALL and rise["plain"] >= LESION_LARGE:
        return Finding(SUPPORTED, measured)
    if rise["resnet"] >= LESION_LARGE or rise["plain"] <= LESION_SMALL:
        return Finding(CONTRADICTED, measured)
    return Finding(measured=measured, why="between the thresholds")


@claim(
    9,
    "Gradients shatter with depth in plain nets, much less in residual nets",
    "Balduzzi et al. 2017",
    figure="init_probes.png",
    probe="init_probes",
    definition="Shattering: mean over probed depths >= 20 of the residual minus the plain (BN) "
    f"nets' gradient correlation at initialisation; a difference above {CORRELATION_MARGIN} "
    "counts.",
)
def shattering(s: Sweep) -> Finding:
    nets = s.probes["init_probes"]
    bn = nets[(nets["norm"] == "batch") & (nets["depth"] >= 20)]
    table = bn.pivot_table(index="depth", columns="family", values="grad_correlation")
    if not {"plain", "resnet"} <= set(table.columns) or table.dropna().empty:
        return Finding(why="needs plain and residual BN nets probed at depths >= 20")
    advantage = float((table["resnet"] - table["plain"]).mean())
    measured = (
        f"gradient correlation at depths {', '.join(map(str, table.index))}: plain "
        f"{', '.join(f'{v:.2f}' for v in table['plain'])}; residual "
        f"{', '.join(f'{v:.2f}' for v in table['resnet'])}"
    )
    if advantage > CORRELATION_MARGIN:
        return Finding(SUPPORTED, measured)
    if advantage < 0:
        return Finding(CONTRADICTED, measured)
    return Finding(measured=measured, why="residual nets ahead by less than the margin")


@claim(
    10,
    "Skip connections keep the loss landscape near the solution smooth; deep plain nets' is "
    "chaotic",
    "Li et al. 2018",
    figure="landscape.png",
    probe="landscape",
    definition=f"Landscape (deepest nets): sharper means a top Hessian eigenvalue at least "
    f"{SHARPNESS_RATIO:g}x the other's and a higher mean loss at +-1 along the 1-D direction; "
    "both must agree.",
)
def landscape(s: Sweep) -> Finding:
    numbers = s.probes["landscape"]
    numbers = numbers.assign(
        family=numbers["net"].str.split("-").str[0],
        depth=numbers["net"].str.extract(r"-(\d+)")[0].astype(float),
    )
    numbers = numbers[numbers["depth"] == numbers["depth"].max()]  # the deepest nets only
    top = numbers.groupby("family")["top_hessian_eigenvalue"].mean()
    edge = (
        numbers.groupby("family")["loss_at_edge_1d"].mean()
        if "loss_at_edge_1d" in numbers
        else None
    )
    if not {"plain", "resnet"} <= set(top.index) or edge is None:
        return Finding(why="needs landscapes of a plain and a residual net of the same depth")
    measured = (
        f"top Hessian eigenvalue at the weights: plain {top['plain']:.3g}, residual "
        f"{top['resnet']:.3g}; mean loss at +-1 along a direction: plain {edge['plain']:.3g}, "
        f"residual {edge['resnet']:.3g}"
    )

    def sharper(a: str, b: str) -> bool:
        return top[a] >= SHARPNESS_RATIO * top[b] and edge[a] > edge[b]

    if (top <= 0).any():
        why = "a top eigenvalue is not positive: not a minimum along it"
        return Finding(measured=measured, why=why)
    if sharper("plain", "resnet"):
        return Finding(SUPPORTED, measured, "measured as curvature, not as chaos over the surface")
    if sharper("resnet", "plain"):
        return Finding(CONTRADICTED, measured)
    why = "curvature at the weights and loss far from them disagree (or differ < 2x)"
    return Finding(measured=measured, why=why)
