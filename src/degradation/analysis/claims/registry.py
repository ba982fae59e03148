"""What a claim is and the registry that numbers them: a claim is declared once, with
:meth:`Registry.claim` on its rule, and holds its sentence, its source, its figure, the
definition of its thresholds (written from the threshold constants beside it) and the rule that
computes its verdict from a :class:`Sweep`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from degradation.analysis.select import comparable, main_group, metrics_of, one_per_seed
from degradation.analysis.stats import (  # noqa: F401  (the verdicts, re-exported)
    CONTRADICTED,
    LEVEL,
    MARGIN,
    MIN_SEEDS,
    SUPPORTED,
    UNDECIDED,
)

# in place of an interval
NO_INTERVAL = f" (no interval: needs {MIN_SEEDS} seeds per net with some spread)"
# The definitions every claim shares, before those of the claims (in the order of their numbers).
SHARED_DEFINITIONS = [
    f"Error differences of at most {100 * MARGIN:.0f} point count as none. A difference comes "
    f"with a {100 * LEVEL:.0f}% Welch t interval when every net it compares has at least "
    f"{MIN_SEEDS} seeds (with some spread between them), and a comparing verdict needs the "
    "interval on one side of the margin; with fewer seeds it is not decided.",
    "Error rate of a verdict: each comparing row is a one-sided decision at 2.5% (one side of "
    "a 95% interval) when the truth lies on the margin, and less when it lies further inside; a "
    "row that decides when any one of k tests does (k shortcut variants, either of two nets) "
    "makes each at the k-fold level (Bonferroni), so the row keeps 2.5%. "
    "The rate is per row: no correction is made for the number of rows, so if the truths of "
    "ten rows all sat on their margins, a report would hold at least one wrong verdict with a "
    f"chance of up to {1 - (1 - (1 - LEVEL) / 2) ** 10:.0%} (1 - 0.975^10).",
    "Final training error: mean of the batch errors over the last 5% of the iterations.",
]


class Probe(NamedTuple):
    """A probe's output the claims read: its table, its figure, and where it comes from."""

    table: str
    figure: str
    what: str  # the output in words
    script: str  # the experiments/ script that writes it


# The probe outputs, by the kind a claim names (``probe=``) and :attr:`Sweep.probes` holds.
PROBES = {
    "init_probes": Probe("init_probes.csv", "init_probes.png", "init probes", "probe_init.py"),
    "lesions_single": Probe(
        "lesions_single.csv", "lesions.png", "lesion study", "probe_lesions.py"
    ),
    "lesions_random": Probe(
        "lesions_random.csv", "lesions.png", "lesion study", "probe_lesions.py"
    ),
    "landscape": Probe("landscape.csv", "landscape.png", "landscape", "probe_landscape.py"),
}
# The run columns a rule may read; a sweep without one has it empty.
NEEDED = (
    "run",
    "status",
    "family",
    "depth",
    "seed",
    "max_steps",
    "final_train_error",
    "final_test_error",
)


@dataclass
class Row:
    """One claim of the ledger."""

    number: int
    claim: str
    source: str
    measured: str
    verdict: str
    why: str = ""
    figure: str = ""


@dataclass
class Finding:
    """What a rule found for one claim: the verdict, the measurement in words and, where it
    helps, why (the reason for 'not decided')."""

    verdict: str = UNDECIDED
    measured: str = ""
    why: str = ""


@dataclass
class Sweep:
    """What the rules read: every run and its metrics, the probe tables found beside the sweep
    (by kind, see :data:`PROBES`), and the finished runs of the paper's design
    (:func:`degradation.analysis.select.comparable`) with their metrics."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    probes: dict[str, pd.DataFrame] = field(default_factory=dict)
    done: pd.DataFrame = field(init=False)
    done_metrics: pd.DataFrame = field(init=False)
    # every comparable run, of all groups (the budget rule reads across training lengths)
    all_done: pd.DataFrame = field(init=False)
    # the settings of the group ``done`` holds where the sweep has several (else empty)
    group: dict = field(init=False)

    def __post_init__(self) -> None:
        self.runs = one_per_seed(self.runs)  # a seed counts once, however often it is listed
        filled = self.runs.assign(**{c: None for c in NEEDED if c not in self.runs})
        self.all_done = comparable(filled)
        self.done, self.group = main_group(self.all_done)
        self.done_metrics = metrics_of(self.done, self.metrics)


Rule = Callable[[Sweep], "Finding | tuple[Finding, ...]"]


@dataclass(frozen=True)
class Claim:
    """One numbered claim: its statements (the claim and, sharing its measurement, further
    readings of it, one ledger row each), its figure, its definition, the probe output it needs
    (if any) and its rule, which returns one :class:`Finding` per statement."""

    number: int
    statements: tuple[tuple[str, str], ...]  # (the claim in one sentence, its source)
    figure: str
    rule: Rule
    definition: str = ""
    probe: str = ""  # a key of PROBES: without that output the claim is not decided

    def rows(self, sweep: Sweep) -> list[Row]:
        """The claim's ledger rows, its verdicts computed from ``sweep``."""
        if self.probe and self.probe not in sweep.probes:
            probe = PROBES[self.probe]
            why = f"no {probe.what} (experiments/{probe.script}; analyze --probes DIR)"
            found = tuple(Finding(why=why) for _ in self.statements)
        else:
            found = self.rule(sweep)
        findings = found if isinstance(found, tuple) else (found,)
        if len(findings) != len(self.statements):
            raise ValueError(
                f"claim {self.number}: {len(findings)} findings for {len(self.statements)} "
                "statements"
            )
        return [
            Row(self.number, text, source, f.measured, f.verdict, f.why, self.figure)
            for (text, source), f in zip(self.statements, findings, strict=True)
        ]


class Registry:
    """The claims by number; a number is taken once."""

    def __init__(self, claims: Registry | None = None) -> None:
        self._claims: dict[int, Claim] = dict(claims._claims) if claims is not None else {}

    def __iter__(self) -> Iterator[Claim]:
        return iter(sorted(self._claims.values(), key=lambda c: c.number))

    def __len__(self) -> int:
        return len(self._claims)

    def next_number(self) -> int:
        """The number after the highest taken."""
        return max(self._claims, default=0) + 1

    def add(self, claim: Claim) -> Claim:
        """Register ``claim``; a number already taken raises :class:`ValueError`."""
        if not isinstance(claim.number, int) or claim.number < 1:
            raise ValueError(f"a claim's number is a whole number from 1: {claim.number!r}")
        taken = self._claims.get(claim.number)
        if taken is not None:
            raise ValueError(
                f"claim number {claim.number} is taken by {taken.statements[0][0]!r} "
                f"({taken.rule.__module__}.{taken.rule.__name__}); "
                f"the next free one is {self.next_number()}"
            )
        self._claims[claim.number] = claim
        return claim

    def claim(
        self,
        number: int,
        text: str,
        source: str,
        *,
        figure: str,
        definition: str = "",
        probe: str = "",
        also: tuple[tuple[str, str], ...] = (),
    ) -> Callable[[Rule], Rule]:
        """Declare claim ``number`` on its rule: ``text`` (the claim in one sentence) from
        ``source``, its ``figure``, its ``definition`` (for the report's Definitions) and the
        ``probe`` output it needs (a key of :data:`PROBES`; the rule then finds it in
        :attr:`Sweep.probes`); ``also`` holds further (text, source) statements decided by the
        same measurement."""
        if probe and probe not in PROBES:
            raise ValueError(f"claim {number}: no probe output {probe!r} (one of {list(PROBES)})")

        def register(rule: Rule) -> Rule:
            self.add(Claim(number, ((text, source), *also), figure, rule, definition, probe))
            return rule

        return register

    def definitions(self) -> list[str]:
        """The shared definitions, then each claim's."""
        return [*SHARED_DEFINITIONS, *(c.definition for c in self if c.definition)]


REGISTRY = Registry()
claim = REGISTRY.claim
