"""The claims ledger: the explanations users bring, each with a measurement and a computed
verdict (supported, contradicted, or not decided by this sweep, with the reason).

Every verdict comes from the runs of a sweep and, where a claim needs them, from probe outputs
found beside it (:data:`~degradation.analysis.claims.registry.PROBES`). Each claim is one
declaration (:meth:`Registry.claim` on its rule) in ``training`` (decided by the runs), ``probes``
(by probe outputs) or ``designs`` (by sweeps of the later designs), beside the threshold
constants its rule and its definition read; its number is its row in the ledger, and a number
is taken once. :data:`DEFINITIONS` states the thresholds for the report.
"""

from __future__ import annotations

import pandas as pd

from degradation.analysis.base import Context, Section
from degradation.analysis.claims import designs, probes, training  # their claims register
from degradation.analysis.claims.probes import find_probes, probe_figures
from degradation.analysis.claims.registry import (
    CONTRADICTED,
    PROBES,
    REGISTRY,
    SUPPORTED,
    UNDECIDED,
    Claim,
    Finding,
    Registry,
    Row,
    Sweep,
    claim,
)

__all__ = [
    "CONTRADICTED",
    "DEFINITIONS",
    "NEEDS",
    "PROBES",
    "REGISTRY",
    "SUPPORTED",
    "TITLE",
    "UNDECIDED",
    "Claim",
    "Finding",
    "Registry",
    "Row",
    "Sweep",
    "claim",
    "designs",
    "find_probes",
    "ledger",
    "probe_figures",
    "probes",
    "section",
    "table",
    "training",
]

TITLE = "Claims ledger"
NEEDS = (
    f"finished runs; probe outputs ({', '.join(p.table for p in PROBES.values())}) for the "
    "claims that need them"
)
# The report's definitions of the ledger's thresholds: the shared ones, then each claim's.
DEFINITIONS = REGISTRY.definitions()


def ledger(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    probes: dict | None = None,
    registry: Registry = REGISTRY,
) -> list[Row]:
    """Every claim of ``registry`` with its computed verdict, in the order of their numbers."""
    return rows_of(Sweep(runs, metrics, probes or {}), registry)


def rows_of(sweep: Sweep, registry: Registry = REGISTRY) -> list[Row]:
    """The ledger's rows computed from one :class:`Sweep`."""
    return [row for one in registry for row in one.rows(sweep)]


def table(rows: list[Row]) -> pd.DataFrame:
    """The ledger as a table."""
    return pd.DataFrame(
        [
            {
                "#": r.number,
                "claim": r.claim,
                "source": r.source,
                "measured": r.measured or "-",
                "verdict": r.verdict + (f" ({r.why})" if r.why else ""),
                "figure": f"[{r.figure}]({r.figure})" if r.figure else "",
            }
            for r in rows
        ]
    )


def section(ctx: Context) -> Section:
    """The ledger table (also ledger.csv), probes looked for in the probe directories first."""
    sweep = Sweep(ctx.runs, ctx.metrics, find_probes(ctx.search_dirs))
    rows = rows_of(sweep)
    ctx.save_table(table(rows), "ledger")
    group = sweep.group
    read = (
        " The sweep holds several groups of runs; the rows compare those of "
        + ", ".join(f"{k}={v}" for k, v in group.items())
        + " (the longest training), and claim 2 reads across the budgets."
        if group
        else ""
    )
    for figure in probe_figures(ctx.search_dirs):  # beside the report's links
        ctx.copy_beside(figure)
    undecided = [f"claim {r.number}: {r.why}" for r in rows if r.verdict == UNDECIDED and r.why]
    return Section(
        TITLE,
        [
            "Each explanation users bring, what this sweep measured, and the verdict computed "
            "from it (thresholds under Definitions)." + read,
            "",
            table(rows).to_markdown(index=False),
        ],
        skipped=undecided,
    )
