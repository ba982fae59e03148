"""The statistics every comparing verdict rests on: scipy's t quantiles, the interval guards, and
a calibration on simulated sweeps with known truth (the per-net seed spreads measured in the
shipped results/quick_seeds): a true difference inside the margin is decided wrongly in at most
5% of draws at every number of seeds, and a true difference of three margins is decided no less
often as seeds are added."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from degradation.analysis import stats, train_eval
from degradation.analysis.claims import training
from degradation.analysis.claims.registry import CONTRADICTED, SUPPORTED, UNDECIDED, Sweep
from degradation.results import collect

SEED_COUNTS = (1, 2, 3, 5)
DRAWS = 1000  # per case: a 2.5% share has a Monte Carlo std of 0.5 point


@pytest.fixture(scope="module")
def spreads() -> pd.DataFrame:
    """Per net of the quick preset: mean and std over its 3 seeds of the final training error
    and of the test-minus-training gap, from the shipped results/quick_seeds."""
    runs, _ = collect(ROOT / "results" / "quick_seeds")
    train, _ = train_eval.table(runs)  # claim 7's training error, where the runs keep it
    if len(train) < len(runs):  # runs made before it: the batch training error's gap
        train = runs.set_index("run")["final_train_error"]
    runs = runs.assign(gap=runs["final_test_error"] - runs["run"].map(train))
    table = runs.groupby("net")[["final_train_error", "gap"]].agg(["mean", "std"])
    assert len(table) == 6 and table.notna().all().all()
    return table


def test_t_quantiles_are_scipy_exact():
    for dof, exact in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (1000, 1.9623)):
        assert stats.t975(dof) == pytest.approx(exact, rel=1e-4)
    assert stats.t975(1.5) == pytest.approx(6.02, rel=0.01)  # the audit's counterexample


def test_identical_seeds_give_no_zero_width_interval():
    diff, ci = stats.difference([0.22, 0.22, 0.22], [0.27, 0.27, 0.27])
    assert ci is None and "identical" in stats.no_interval([0.22] * 3, [0.27] * 3)
    assert stats.compare(diff, ci, stats.MARGIN) is None
    # seeds that all fit every image (error exactly 0) keep an interval of some width
    diff, ci = stats.difference([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert diff == 0 and ci is not None and ci[0] < 0 < ci[1] and ci[1] < stats.MARGIN
    assert stats.compare(diff, ci, stats.MARGIN) is False


def test_one_seed_at_22_against_27_percent_is_not_decided():
    diff, ci = stats.difference([0.27], [0.22])
    assert ci is None and stats.compare(diff, ci, stats.MARGIN) is None
    assert "one seed" in stats.no_interval([0.27], [0.22])
    runs = synthetic_runs({("plain", 8): [0.22], ("plain", 44): [0.27]})
    finding = training.degradation(Sweep(runs, pd.DataFrame()))
    assert finding.verdict == UNDECIDED and "one seed" in finding.why


def synthetic_runs(
    finals: dict, gaps: dict | None = None, steps: int = 600, root: Path | None = None
) -> pd.DataFrame:
    """A runs table: per (family, depth), the final training errors of its seeds (and test
    errors that far above them). With ``root``, each run gets a directory there whose cached
    eval-mode training error (train_eval.csv) equals its final training error."""
    rows = []
    for (family, depth), values in finals.items():
        extra = (gaps or {}).get((family, depth), [0.0] * len(values))
        for seed, (value, gap) in enumerate(zip(values, extra, strict=True)):
            name = f"{family}{depth}-seed{seed}"
            path = None
            if root is not None:
                path = root / name
                path.mkdir(parents=True, exist_ok=True)
                pd.DataFrame({"images": [5000], "error": [value]}).to_csv(
                    path / train_eval.TRAIN_EVAL_FILE, index=False
                )
            rows.append(
                {
                    "run": name,
                    "path": str(path),
                    "status": "finished",
                    "family": family,
                    "depth": depth,
                    "seed": seed,
                    "max_steps": steps,
                    "data": "fashion_mnist",
                    "width": 8,
                    "final_train_error": value,
                    "final_test_error": value + gap,
                }
            )
    return pd.DataFrame(rows)


def draw(spreads, column, first, second, truth, seeds, rng) -> tuple[np.ndarray, np.ndarray]:
    """Seeds of nets ``first`` and ``second`` ((family, depth)), ``truth`` apart in mean, each
    seed drawn from a normal with that net's measured std."""
    base = spreads.loc[f"{second[0]}-{second[1]}", (column, "mean")]
    sd = {net: spreads.loc[f"{net[0]}-{net[1]}", (column, "std")] for net in (first, second)}
    return (
        base + truth + sd[first] * rng.standard_normal(seeds),
        base + sd[second] * rng.standard_normal(seeds),
    )


def sweep_of(column: str, first, second, a: np.ndarray, b: np.ndarray, root: Path) -> Sweep:
    """A sweep holding the two nets' draws as final training errors (or, for the gap, as test
    minus eval-mode training errors, kept in run directories under ``root``)."""
    if column == "final_train_error":
        return Sweep(synthetic_runs({first: list(a), second: list(b)}), pd.DataFrame())
    alike = {first: [0.2] * len(a), second: [0.2] * len(b)}
    runs = synthetic_runs(alike, {first: list(a), second: list(b)}, root=root)
    return Sweep(runs, pd.DataFrame())


# Each comparing row on runs: (its rule, the column drawn, the nets compared (first minus
# second), the sign that turns the row's claim into "first minus second above the margin", the
# verdict a positive answer gets).
ROWS = {
    "1 degradation": (training.degradation, "final_train_error", ("plain", 44), ("plain", 8),
                      1, SUPPORTED),
    "3 residual": (training.residual, "final_train_error", ("resnet", 44), ("resnet", 8),
                   1, CONTRADICTED),
    "7 generalization": (training.generalization, "gap", ("plain", 44), ("resnet", 44),
                         1, SUPPORTED),
}  # fmt: skip
OTHER = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}


def share_above(spreads, row, truth, seeds, rng, draws) -> float:
    """How often the row's decision says "above the margin" over ``draws`` simulated sweeps
    (the decision of :func:`stats.compare` on :func:`stats.difference`, which every comparing
    row makes)."""
    _, column, first, second, _, _ = ROWS[row]
    hits = 0
    for _ in range(draws):
        a, b = draw(spreads, column, first, second, truth, seeds, rng)
        hits += stats.compare(*stats.difference(a, b), stats.MARGIN) is True
    return hits / draws


@pytest.mark.parametrize("row", list(ROWS))
def test_each_row_decides_as_the_calibrated_rule(row, spreads, tmp_path):
    """The row's verdict is the calibrated decision on its two nets, draw by draw, so the
    calibration below holds for the row itself."""
    rule, column, first, second, _, above = ROWS[row]
    rng = np.random.default_rng(19)
    for seeds in SEED_COUNTS:
        for truth in (0.0, stats.MARGIN, 3 * stats.MARGIN):
            for _ in range(8):
                a, b = draw(spreads, column, first, second, truth, seeds, rng)
                found = stats.compare(*stats.difference(a, b), stats.MARGIN)
                expected = {True: above, False: OTHER[above], None: UNDECIDED}[found]
                got = rule(sweep_of(column, first, second, a, b, tmp_path)).verdict
                assert got == expected, (row, seeds, truth, list(a), list(b))


@pytest.mark.parametrize("row", list(ROWS))
def test_a_difference_inside_the_margin_is_decided_wrongly_at_most_5_percent(row, spreads):
    rng = np.random.default_rng(20)
    for seeds in SEED_COUNTS:
        for truth in (0.0, stats.MARGIN):  # the margin's edge is the worst case
            wrong = share_above(spreads, row, truth, seeds, rng, DRAWS)
            assert wrong <= 0.05, (row, seeds, truth, wrong)


@pytest.mark.parametrize("row", list(ROWS))
def test_three_margins_are_decided_no_less_often_with_more_seeds(row, spreads):
    rng = np.random.default_rng(21)
    power = [share_above(spreads, row, 3 * stats.MARGIN, n, rng, DRAWS) for n in SEED_COUNTS]
    # a share of DRAWS draws has a Monte Carlo std of at most 1.6 points
    assert all(b >= a - 0.03 for a, b in zip(power, power[1:], strict=False)), power
    assert power[-1] > power[0], power


@pytest.mark.slow
@pytest.mark.parametrize("row", list(ROWS))
def test_the_rows_themselves_keep_the_error_on_simulated_sweeps(row, spreads, tmp_path):
    """The same calibration through the ledger's rules on whole simulated sweeps (slow)."""
    rule, column, first, second, _, above = ROWS[row]
    rng = np.random.default_rng(23)
    for seeds in SEED_COUNTS:
        verdicts = []
        for _ in range(400):
            a, b = draw(spreads, column, first, second, stats.MARGIN, seeds, rng)
            verdicts.append(rule(sweep_of(column, first, second, a, b, tmp_path)).verdict)
        assert verdicts.count(above) / len(verdicts) <= 0.05, (row, seeds)


def test_the_guarded_welch_rule_keeps_its_error_for_unequal_spreads():
    """The interval itself, on the hardest spreads of the quick preset (std 2.4 against 0.7
    points): a one-sided error of at most 2.5% (+ Monte Carlo noise) at the margin's edge."""
    rng = np.random.default_rng(22)
    for seeds in (3, 5, 10):
        wrong = 0
        for _ in range(4000):
            a = stats.MARGIN + 0.024 * rng.standard_normal(seeds)
            b = 0.007 * rng.standard_normal(seeds)
            wrong += stats.compare(*stats.difference(a, b), stats.MARGIN) is True
        assert wrong / 4000 <= 0.035, (seeds, wrong / 4000)


def test_a_seed_listed_twice_counts_once():
    """The same run copied into two analysed folders (or a seed trained twice) is one seed: three
    copies of seed 0 do not make an interval."""
    runs = synthetic_runs({("plain", 8): [0.20, 0.21, 0.19], ("plain", 44): [0.30, 0.31, 0.29]})
    decided = training.degradation(Sweep(runs, pd.DataFrame()))
    assert decided.verdict == SUPPORTED
    copies = runs.assign(seed=0, run=runs["run"] + "-copy")  # every net's seeds now one seed
    finding = training.degradation(Sweep(copies, pd.DataFrame()))
    assert finding.verdict == UNDECIDED and "one seed" in finding.why, finding
