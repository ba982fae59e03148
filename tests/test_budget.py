"""The training budget as an axis: the schedule it sets, and the end-state rule (claim 2) on
synthetic budget sweeps with a known answer."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from degradation.analysis import budget
from degradation.analysis.claims import ledger
from degradation.config import apply_budget
from degradation.rundirs import run_name

SPREAD = 0.003  # seed-to-seed std of a final training error (0.3 points)


def sweep(shallow: dict[int, float], deep: dict[int, float], resnet: dict[int, float] | None = None,
          seeds: int = 3, spread: float = SPREAD, rng: int = 0) -> pd.DataFrame:  # fmt: skip
    """Finished runs of plain-8 and plain-44 (and resnet-44) whose mean final training error
    at each budget is given, with seed noise of std ``spread``."""
    noise = np.random.default_rng(rng)
    rows = []
    nets = [("plain", 8, shallow), ("plain", 44, deep)]
    if resnet is not None:
        nets.append(("resnet", 44, resnet))
    for family, depth, means in nets:
        for steps, mean in means.items():
            for seed in range(seeds):
                rows.append({
                    "run": f"{family}{depth}-budget{steps}-seed{seed}", "status": "finished",
                    "family": family, "depth": depth, "seed": seed, "max_steps": steps,
                    "shortcut": "A" if family == "resnet" else None,
                    "final_train_error": mean + noise.normal(0, spread),
                    "final_test_error": mean + 0.1, "path": "/nonexistent/run",
                })  # fmt: skip
    return pd.DataFrame(rows)


BUDGETS = (1000, 2000, 4000)


def test_a_gap_that_shrinks_toward_zero_while_the_shallow_net_improves_is_not_decided():
    runs = sweep({1000: 0.20, 2000: 0.15, 4000: 0.10}, {1000: 0.30, 2000: 0.20, 4000: 0.12})
    reading = budget.read(runs)
    assert reading.verdict == budget.UNDECIDED
    assert "plain-8 still improves" in reading.why


def test_a_gap_that_settles_at_five_points_with_a_converged_shallow_net_is_supported():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.12, 2000: 0.07, 4000: 0.072})
    assert budget.read(runs).verdict == budget.SUPPORTED


def test_a_gap_that_settles_inside_the_margin_is_contradicted():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.12, 2000: 0.03, 4000: 0.015})
    assert budget.read(runs).verdict == budget.CONTRADICTED


def test_a_gap_that_still_shrinks_is_not_decided_even_when_large():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.30, 2000: 0.20, 4000: 0.10})
    reading = budget.read(runs)
    assert reading.verdict == budget.UNDECIDED and "shrinking" in reading.why


def test_one_budget_is_not_decided_and_names_the_preset():
    runs = sweep({600: 0.20}, {600: 0.30})
    reading = budget.read(runs)
    assert reading.verdict == budget.UNDECIDED
    assert reading.why == f"one budget (run experiment={budget.PRESET})"


def test_one_seed_never_decides():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.12, 2000: 0.07, 4000: 0.072},
                 seeds=1)  # fmt: skip
    reading = budget.read(runs)
    assert reading.verdict == budget.UNDECIDED and "one seed" in reading.why


def test_identical_seeds_give_no_interval_and_no_verdict():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.12, 2000: 0.07, 4000: 0.072},
                 spread=0.0)  # fmt: skip
    assert budget.read(runs).verdict == budget.UNDECIDED


def test_the_residual_fix_across_budgets():
    plain = {1000: 0.12, 2000: 0.07, 4000: 0.072}
    shallow = {1000: 0.05, 2000: 0.02, 4000: 0.02}
    runs = sweep(shallow, plain, {1000: 0.06, 2000: 0.02, 4000: 0.02})
    assert budget.read(runs, residual_fix=True).verdict == budget.SUPPORTED
    same = sweep(shallow, plain, {1000: 0.125, 2000: 0.075, 4000: 0.077})
    assert budget.read(same, residual_fix=True).verdict == budget.CONTRADICTED


def test_claim_2_of_the_ledger_is_the_budget_rule():
    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.12, 2000: 0.07, 4000: 0.072})
    rows = {r.number: r for r in ledger(runs, pd.DataFrame())}
    assert rows[2].verdict == "supported" and rows[2].figure == "budget.png"
    one = {r.number: r for r in ledger(sweep({600: 0.2}, {600: 0.3}), pd.DataFrame())}
    assert one[2].verdict == "not decided" and "one budget" in one[2].why


def test_the_rule_errs_rarely_when_the_gap_sits_on_the_margin():
    """Calibration: with a true gap exactly at the margin (and a converged shallow net), draws
    of 3 seeds are called supported in at most 5% (each condition is one-sided at 97.5%)."""
    wrong = 0
    for rng in range(200):
        runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.06, 2000: 0.03, 4000: 0.03},
                     rng=rng)  # fmt: skip
        wrong += budget.read(runs).verdict == budget.SUPPORTED
    assert wrong / 200 <= 0.05


# ------------------------------------------------------------------------------------------
# The knob
# ------------------------------------------------------------------------------------------


def cfg_with(budget_steps, warmup: int = 0, evaluations: int = 8):
    return OmegaConf.create({
        "trainer": {"max_steps": 64000}, "eval_every": 1000,
        "scheduler": {"milestones": [32000, 48000], "warmup_steps": warmup},
        "schedule": {"budget": budget_steps, "evaluations": evaluations},
    })  # fmt: skip


def test_the_budget_sets_length_drops_and_evaluations():
    cfg = cfg_with(3000)
    apply_budget(cfg)
    assert cfg.trainer.max_steps == 3000
    assert list(cfg.scheduler.milestones) == [1500, 2250]  # the paper's 50% and 75%
    assert cfg.eval_every == 375
    untouched = cfg_with(None)
    apply_budget(untouched)
    assert untouched.trainer.max_steps == 64000 and untouched.eval_every == 1000


@pytest.mark.parametrize(
    ("steps", "warmup", "match"),
    [(2, 0, "at least 4"), ("long", 0, "number of iterations"), (1000, 600, "warm-up")],
)
def test_bad_budgets_are_refused_naming_the_key(steps, warmup, match):
    with pytest.raises(ValueError, match=match):
        apply_budget(cfg_with(steps, warmup))


def test_run_names_show_the_budget_only_when_it_is_set():
    model = {"residual": False, "depth": 8, "width": 8}
    assert run_name(model, "fashion_mnist", 0) == "plain8-w8-fashion_mnist-seed0"
    assert run_name(model, "fashion_mnist", 0, 1500) == "plain8-w8-fashion_mnist-budget1500-seed0"


def test_the_other_claims_compare_the_longest_budget_only():
    """A budget sweep holds several training lengths: claim 1 compares the nets of the longest
    one (pooling budgets would mix early and late errors), claim 2 reads across them."""
    from degradation.analysis.claims.registry import Sweep

    runs = sweep({1000: 0.05, 2000: 0.02, 4000: 0.02}, {1000: 0.30, 2000: 0.20, 4000: 0.025})
    s = Sweep(runs, pd.DataFrame())
    assert set(s.done["max_steps"]) == {4000} and s.group == {"max_steps": 4000}
    assert set(s.all_done["max_steps"]) == {1000, 2000, 4000}
    rows = {r.number: r for r in ledger(runs, pd.DataFrame())}
    # 2.5% - 2.0% at 4000 iterations (pooled over the budgets it would be +14.5 points)
    assert re.search(r"minus plain-8: [+-][01]\.\d points", rows[1].measured), rows[1].measured
    assert Sweep(sweep({600: 0.2}, {600: 0.3}), pd.DataFrame()).group == {}


def test_a_short_last_budget_step_is_not_read_as_an_end_state():
    """Issue case 1: budgets 1000/2000/2200, the gap +14.6 -> +6.2 -> +6.0 points while it truly
    closes about 8 points per doubling: the short last step must not decide."""
    runs = sweep({1000: 0.034, 2000: 0.0034, 2200: 0.0030},
                 {1000: 0.180, 2000: 0.0654, 2200: 0.0630})  # fmt: skip
    reading = budget.read(runs)
    assert reading.verdict == budget.UNDECIDED
    assert "budgets too close (2000, 2200)" in reading.why
    row = {r.number: r for r in ledger(runs, pd.DataFrame())}[2]
    assert row.verdict == budget.UNDECIDED and "budgets too close" in row.why
    # the same gaps at doubled budgets: the rule reads them (the short step alone was the fault)
    doubled = sweep({1000: 0.034, 2000: 0.0034, 4000: 0.0030},
                    {1000: 0.180, 2000: 0.0654, 4000: 0.0630})  # fmt: skip
    assert "too close" not in budget.read(doubled).why


def test_doubled_budgets_are_not_too_close():
    assert budget.too_close([1000, 2000, 4000]) is None
    assert budget.too_close([1000, 2000, 3999]) == (2000, 3999)
    assert budget.too_close([500, 1000, 4000]) is None
