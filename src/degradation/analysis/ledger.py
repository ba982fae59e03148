"""The claims ledger under its old name: the ledger and its claims live in
:mod:`degradation.analysis.claims`; this module keeps the names the report, the notebook and
older scripts use."""

from __future__ import annotations

from degradation.analysis.claims import (
    CONTRADICTED,
    DEFINITIONS,
    NEEDS,
    PROBES,
    SUPPORTED,
    TITLE,
    UNDECIDED,
    Row,
    find_probes,
    ledger,
    probe_figures,
    section,
    table,
)
from degradation.analysis.claims.designs import NORM_FREE_MARGIN
from degradation.analysis.claims.probes import (
    CORRELATION_MARGIN,
    EXPLODE_LOG,
    LESION_LARGE,
    LESION_SMALL,
    NONCONVEX_MARGIN,
)
from degradation.analysis.convergence import EARLY_FRACTIONS, STUCK_ERROR
from degradation.analysis.gradients import VANISH_RATIO
from degradation.analysis.responses import RESPONSE_MARGIN
from degradation.analysis.stats import MARGIN, MIN_SEEDS, difference, t975

__all__ = [
    "CONTRADICTED",
    "CORRELATION_MARGIN",
    "DEFINITIONS",
    "EXPLODE_LOG",
    "EARLY_FRACTIONS",
    "LESION_LARGE",
    "LESION_SMALL",
    "MARGIN",
    "NEEDS",
    "NORM_FREE_MARGIN",
    "PROBES",
    "RESPONSE_MARGIN",
    "MIN_SEEDS",
    "NONCONVEX_MARGIN",
    "STUCK_ERROR",
    "SUPPORTED",
    "TITLE",
    "UNDECIDED",
    "VANISH_RATIO",
    "Row",
    "difference",
    "find_probes",
    "ledger",
    "probe_figures",
    "section",
    "table",
    "t975",
]
