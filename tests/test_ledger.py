"""The claims ledger: verdicts computed from the data (flipping the data flips them), intervals
across seeds, and 'not decided' with its reason when a sweep lacks what a claim needs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_analysis import make_run

from conftest import ROOT
from degradation.analysis import claims, ledger
from degradation.analysis.claims.training import rises
from degradation.results import collect


def verdict(rows, number):
    return next(r for r in rows if r.number == number)


def sweep(tmp_path, plain, resnet, seeds=(0, 1, 2)):
    """Runs with these final training errors per depth (8 and 44), one per seed."""
    for seed in seeds:
        for family, finals in (("plain", plain), ("resnet", resnet)):
            for depth, final in finals.items():
                make_run(tmp_path, family, depth, final + 0.004 * seed, seed=seed)
    return collect(tmp_path)


def test_flipping_the_data_flips_the_verdicts(tmp_path):
    runs, metrics = sweep(tmp_path / "a", {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.08})
    rows = ledger.ledger(runs, metrics)
    assert verdict(rows, 1).verdict == ledger.SUPPORTED
    assert verdict(rows, 3).verdict == ledger.SUPPORTED
    assert re.search(r"plain-44 minus plain-8: \+1[45]\.\d points", verdict(rows, 1).measured)

    runs, metrics = sweep(tmp_path / "b", {8: 0.25, 44: 0.10}, {8: 0.08, 44: 0.20})
    rows = ledger.ledger(runs, metrics)
    assert verdict(rows, 1).verdict == ledger.CONTRADICTED
    assert verdict(rows, 3).verdict == ledger.CONTRADICTED


def test_three_seeds_give_an_interval_that_decides_or_not(tmp_path):
    runs, metrics = sweep(tmp_path / "clear", {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.10},
                          seeds=(0, 1, 2))  # fmt: skip
    row = verdict(ledger.ledger(runs, metrics), 1)
    assert row.verdict == ledger.SUPPORTED and "95% interval" in row.measured
    diff, ci = ledger.difference(np.array([0.10, 0.14, 0.06]), np.array([0.09, 0.10, 0.11]))
    assert ci[0] < ledger.MARGIN < ci[1]  # a noisy 1-point difference straddles the margin
    assert rises(diff, ci) == ledger.UNDECIDED


def test_a_sweep_without_what_a_claim_needs_says_not_decided_and_why(tmp_path):
    make_run(tmp_path, "plain", 20, 0.2)  # one plain net: no depth comparison, no residual net
    runs, metrics = collect(tmp_path)
    rows = ledger.ledger(runs, metrics)
    assert all(r.verdict == ledger.UNDECIDED for r in rows if r.number != 4)
    assert "two depths" in verdict(rows, 1).why
    assert "no init probes" in verdict(rows, 9).why
    assert "no lesion study" in verdict(rows, 8).why
    assert "no landscape" in verdict(rows, 10).why
    assert "no gradient norms" in verdict(rows, 4).why


def test_probe_claims_follow_the_probe_tables(tmp_path):
    # three init seeds, a little apart: (family, norm, depth) -> log ratio, line correlation
    base = {
        ("plain", "batch", 8): (-0.5, 0.9), ("plain", "batch", 20): (1.5, 0.4),
        ("plain", "batch", 56): (3.0, 0.0), ("plain", "none", 8): (-0.5, 0.9),
        ("plain", "none", 56): (-0.4, 0.5), ("resnet", "batch", 8): (-0.2, 0.95),
        ("resnet", "batch", 20): (0.1, 0.85), ("resnet", "batch", 56): (0.3, 0.7),
    }  # fmt: skip
    init = pd.DataFrame([
        {"family": f, "norm": n, "depth": d, "seed": seed, "grad_log_ratio": g + 0.05 * seed,
         "line_correlation": c + 0.01 * seed, "grad_correlation": c}
        for (f, n, d), (g, c) in base.items() for seed in (0, 1, 2)
    ])  # fmt: skip

    def lesion_table(plain: list[float], resnet: list[float]) -> pd.DataFrame:
        rows = []
        for seed in (0, 1, 2):
            for family, errors in (("plain", plain), ("resnet", resnet)):
                for block, err in enumerate(errors):
                    rows.append({"net": f"{family}-44 seed {seed}", "family": family,
                                 "block": block, "downsampling": False,
                                 "test_error": err + 0.005 * seed * (block > 0)})  # fmt: skip
        return pd.DataFrame(rows)

    lesions = lesion_table([0.3, 0.8, 0.9], [0.2, 0.21, 0.22])

    def landscape_table(share: tuple[float, float], ratio: tuple[float, float]) -> pd.DataFrame:
        """Three nets per family: non-monotone curves out of 6 and grid-mean ratio."""
        return pd.DataFrame([
            {"net": f"{family}-44 seed {seed}", "nonmonotone_1d": round(6 * sh) - (seed == 1),
             "curves_1d": 6, "minima_2d": 0, "pairs": 3, "ratio_grid_mean": r + 0.01 * seed,
             "lambda_max": 50.0, "top_hessian_eigenvalue": 50.0, "loss_at_edge_1d": 2.0}
            for family, sh, r in (("plain", share[0], ratio[0]), ("resnet", share[1], ratio[1]))
            for seed in (0, 1, 2)
        ])  # fmt: skip

    landscape = landscape_table((0.8, 0.2), (0.4, 0.1))
    probes = {"init_probes": init, "lesions_single": lesions, "landscape": landscape}
    empty = pd.DataFrame(columns=["run", "status", "family", "depth"])
    rows = ledger.ledger(empty, pd.DataFrame(), probes)
    found = [r for r in rows if r.number == 5]
    assert [r.verdict for r in found] == [ledger.CONTRADICTED, ledger.SUPPORTED]
    assert verdict(rows, 8).verdict == ledger.SUPPORTED
    assert verdict(rows, 9).verdict == ledger.SUPPORTED
    assert verdict(rows, 10).verdict == ledger.SUPPORTED
    # The other way round: residual nets ruined by lesions, flatter plain minimum.
    probes["lesions_single"] = lesion_table([0.3, 0.31, 0.3], [0.2, 0.7, 0.8])
    probes["landscape"] = landscape_table((0.2, 0.8), (0.1, 0.4))
    rows = ledger.ledger(empty, pd.DataFrame(), probes)
    assert verdict(rows, 8).verdict == ledger.CONTRADICTED
    assert verdict(rows, 9).verdict == ledger.SUPPORTED
    assert verdict(rows, 10).verdict == ledger.CONTRADICTED
    # The curves say one thing, the eigenvalue ratio the other: not decided.
    probes["landscape"] = landscape_table((0.8, 0.2), (0.1, 0.4))
    row = verdict(ledger.ledger(empty, pd.DataFrame(), probes), 10)
    assert row.verdict == ledger.UNDECIDED and "disagree" in row.why
    # Residual nets whose line correlation decays as fast as the plain nets': contradicted.
    same = init.copy()
    plain_bn = (same["family"] == "plain") & (same["norm"] == "batch")
    for depth in (8, 20, 56):
        at = same["depth"] == depth
        same.loc[(same["family"] == "resnet") & at, "line_correlation"] = same.loc[
            plain_bn & at, "line_correlation"
        ].to_numpy()
    probes["init_probes"] = same
    assert verdict(ledger.ledger(empty, pd.DataFrame(), probes), 9).verdict == ledger.CONTRADICTED


def test_claim_numbers_are_taken_once_and_a_new_claim_comes_next(tmp_path):
    registry = claims.Registry(claims.REGISTRY)  # a copy: the suite's ledger stays as it is
    number = registry.next_number()
    assert number == len(claims.REGISTRY) + 1

    @registry.claim(number, "A dummy claim", "this test", figure="", definition="Dummy: none.")
    def dummy(sweep):
        return claims.Finding(claims.SUPPORTED, f"{len(sweep.done)} finished runs")

    with pytest.raises(ValueError, match=f"claim number {number} is taken by 'A dummy claim'"):
        registry.claim(number, "Another dummy claim", "this test", figure="")(dummy)
    with pytest.raises(ValueError, match="claim number 1 is taken"):
        claims.REGISTRY.claim(1, "A second claim 1", "this test", figure="")(dummy)
    runs, metrics = sweep(tmp_path, {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.08})
    shipped = ledger.table(ledger.ledger(runs, metrics))
    assert list(shipped["#"]) == [1, 2, 3, 4, 5, *range(5, number)]  # claim 5 has two rows
    extended = ledger.table(claims.ledger(runs, metrics, registry=registry))
    assert extended.iloc[:-1].equals(shipped)
    assert extended.iloc[-1].to_dict() == {
        "#": number, "claim": "A dummy claim", "source": "this test",
        "measured": "12 finished runs", "verdict": "supported", "figure": "",
    }  # fmt: skip
    assert registry.definitions()[-1] == "Dummy: none."
    assert "Dummy: none." not in ledger.DEFINITIONS


def test_analyze_prints_the_ledger_and_writes_it_first(tmp_path):
    sweep(tmp_path, {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.08})
    command = [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Claims ledger:" in result.stdout
    assert "1. Deeper plain nets reach a higher training error (degradation): supported" in (
        result.stdout
    )
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Claims ledger") < report.index("## Does it happen?")
    assert "Ledger: Error differences of at most 1 point" in report
    assert (tmp_path / "ledger.csv").is_file()


def test_convergence_table_per_net_across_seeds(tmp_path):
    from degradation.analysis import convergence
    from degradation.analysis.base import Context

    runs, metrics = sweep(tmp_path, {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.08}, seeds=(0, 1))
    stats = convergence.table(runs, metrics)
    assert len(stats) == 4 and (stats["seeds"] == 2).all()
    assert stats["early_std"].notna().all() and stats["gap_mean"].notna().all()
    ctx = Context(runs, metrics, tmp_path)
    lines = "\n".join(convergence.section(ctx).lines)
    assert (tmp_path / "convergence.csv").is_file()
    assert "| resnet-44 |" in lines and "± " in lines
    # No weights and no train_eval.csv: no eval-mode gap, said as such.
    assert stats["eval_gap_mean"].isna().all() and "| - " in lines
    # With a cached eval-mode training error, the gap is test minus that error.
    from degradation.analysis import train_eval

    for _, run in runs.iterrows():
        pd.DataFrame({"images": [5000], "error": [run["final_test_error"] - 0.02]}).to_csv(
            Path(run["path"]) / train_eval.TRAIN_EVAL_FILE, index=False
        )
    stats = convergence.table(runs, metrics)
    assert stats["eval_gap_mean"].to_numpy() == pytest.approx(0.02)
    assert (stats["eval_gap_seeds"] == 2).all()
    assert "+2.0 ± 0.0 points" in "\n".join(convergence.section(ctx).lines)
    # By hand: lr 0.1 until step 50, then 0.01 (the first drop at 50 of 100 steps); error 1.0
    # for 20 steps, then 0.2. The 5-step running mean at steps 12, 25 and 37 (1/4, 1/2, 3/4 of
    # 50) is 1.0, 0.2 and 0.2: the early error is their mean.
    steps = pd.DataFrame({
        "run": "a", "step": range(100), "train_error": [1.0] * 20 + [0.2] * 80,
        "lr": [0.1] * 50 + [0.01] * 50,
    })  # fmt: skip
    assert convergence.first_drop(steps, 100) == 50
    assert convergence.early_error(steps, "a", max_steps=100) == pytest.approx(1.4 / 3)
    # a warm-up (lr rising) is not a drop
    warm = steps.assign(lr=[0.01] * 10 + [0.1] * 40 + [0.01] * 50)
    assert convergence.first_drop(warm, 100) == 50


def test_a_stuck_net_does_not_converge_faster(tmp_path):
    """The audit's counterexample: a residual net stuck at 90% reaches its own end at once;
    it must not win the speed claim."""
    from degradation.analysis.claims import training
    from degradation.analysis.claims.registry import Sweep

    for seed in (0, 1, 2):
        make_run(tmp_path, "plain", 44, 0.25, seed=seed)
        make_run(tmp_path, "resnet", 44, 0.0, seed=seed)
    runs, metrics = collect(tmp_path)
    stuck = runs["family"] == "resnet"
    metrics.loc[metrics["family"] == "resnet", "train_error"] = 0.9
    runs.loc[stuck, "final_train_error"] = 0.9
    finding = training.speed(Sweep(runs, metrics))
    assert finding.verdict == ledger.UNDECIDED and "at or above 50%" in finding.why


def test_the_reports_words_are_the_ledgers_rule(tmp_path):
    """The verdict section's "Degradation: yes/no/not decided" and the residual nets' "rises /
    does not rise" are claims 1 and 3 of the ledger, sweep after sweep."""
    from degradation.analysis import degradation

    words = {True: ledger.SUPPORTED, False: ledger.CONTRADICTED, None: ledger.UNDECIDED}
    rng = np.random.default_rng(5)
    for i in range(6):
        plain = {8: 0.10, 44: 0.10 + rng.uniform(-0.01, 0.04)}
        resnet = {8: 0.10, 44: 0.10 + rng.uniform(-0.01, 0.04)}
        runs, metrics = sweep(tmp_path / str(i), plain, resnet, seeds=(0, 1, 2))
        (found,) = degradation.verdicts(runs)
        rows = ledger.ledger(runs, metrics)
        assert words[found.degradation] == verdict(rows, 1).verdict
        flipped = {True: ledger.CONTRADICTED, False: ledger.SUPPORTED, None: ledger.UNDECIDED}
        assert flipped[found.resnet.rises()] == verdict(rows, 3).verdict


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_flat_noisy_curves_do_not_support_claim_2(tmp_path, seeds):
    """Curves flat over their last part (batch noise only) at one length, plain-44 well above
    plain-8: a flat end is the schedule's, so claim 2 stays not decided at any seed count."""
    runs, metrics = sweep(tmp_path, {8: 0.10, 44: 0.25}, {8: 0.10, 44: 0.08}, seeds=seeds)
    tail = metrics[metrics["step"] >= 160].groupby("run")["train_error"]
    assert (tail.max() - tail.min()).max() < 0.1  # flat but for the noise
    row = verdict(ledger.ledger(runs, metrics), 2)
    assert row.verdict == ledger.UNDECIDED and "one budget" in row.why
