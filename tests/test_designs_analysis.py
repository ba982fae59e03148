"""The analysis of the 2016 designs: the shortcut-variant table, post vs pre-activation, dense
nets beside plain and residual ones, and nets without normalization; their ledger rows change
with the data."""

import pandas as pd
import pytest
from test_analysis import make_run

from degradation.analysis import degradation as deg
from degradation.analysis import ledger, normalization, preactivation, shortcut_variants
from degradation.analysis.stats import MIN_SEEDS
from degradation.report import write_analysis
from degradation.results import collect

SEEDS = (0, 1, 2)


def claim(runs, number):
    (row,) = [r for r in ledger.ledger(runs, pd.DataFrame()) if r.number == number]
    return row


def variant_sweep(root, gating=0.15, dropout_diverged=SEEDS):
    for seed in dropout_diverged:
        make_run(root, "resnet", 20, 0.5, seed=seed, status="diverged", shortcut_variant="dropout")
    for seed in SEEDS:
        make_run(root, "plain", 20, 0.30, seed=seed)
        make_run(root, "resnet", 20, 0.10 + 0.002 * seed, seed=seed, shortcut_variant="identity")
        make_run(root, "resnet", 20, 0.20 + 0.002 * seed, seed=seed, shortcut_variant="scaling")
        make_run(
            root, "resnet", 20, gating + 0.002 * seed, seed=seed,
            shortcut_variant="exclusive_gating", gate_bias=-6.0,
        )  # fmt: skip
        make_run(root, "resnet", 20, 0.88, seed=seed, shortcut_variant="conv1x1")
    return collect(root)[0]


def test_shortcut_variant_table_and_its_claim(tmp_path):
    runs = variant_sweep(tmp_path / "a")
    table = shortcut_variants.variant_table(runs).set_index("shortcut")
    assert table.loc["none (plain net)", "net"] == "plain-20"
    assert table.loc["exclusive_gating", "setting"] == "bias -6"
    assert table.loc["scaling", "setting"] == "0.5, both branches"
    assert table.loc["identity", "outcome"] == "trains"
    assert table.loc["conv1x1", "outcome"] == "stuck near chance"
    assert table.loc["dropout", "outcome"] == "diverged"
    row = claim(runs, 12)
    assert row.verdict == ledger.SUPPORTED, row
    assert "exclusive_gating (bias -6) +5.0 points" in row.measured
    # one diverged run of a variant, nothing finished: not shown to be no better, not decided
    once = claim(variant_sweep(tmp_path / "once", dropout_diverged=(0,)), 12)
    assert once.verdict == ledger.UNDECIDED and "not shown to train no better" in once.why
    assert "dropout" in once.why
    # a variant that trains better than identity contradicts the claim
    better = variant_sweep(tmp_path / "b", gating=0.05)
    row = claim(better, 12)
    assert row.verdict == ledger.CONTRADICTED and "exclusive_gating" in row.why
    # a sweep without variants leaves it open, with the reason
    assert "needs residual nets" in claim(collect(tmp_path / "a" / runs["run"][0])[0], 12).why


def test_paper_number_only_where_the_setting_matches(tmp_path):
    make_run(tmp_path, "resnet", 110, 0.05, data="cifar10", width=16, shortcut_variant="identity")
    make_run(tmp_path, "resnet", 110, 0.06, data="cifar10", width=16,
             shortcut_variant="shortcut_gating", gate_bias=0.0)  # fmt: skip
    table = shortcut_variants.variant_table(collect(tmp_path)[0]).set_index("shortcut")
    assert table.loc["identity", "paper, ResNet-110 CIFAR-10 (%)"] == "6.61"
    assert table.loc["shortcut_gating", "setting"] == "bias 0"
    assert table.loc["shortcut_gating", "paper, ResNet-110 CIFAR-10 (%)"] == "12.86"


@pytest.mark.parametrize(("preact", "verdict"), [(0.10, "supported"), (0.20, "not decided")])
def test_preactivation_table_figure_and_claim(tmp_path, preact, verdict):
    for seed in SEEDS:
        for depth in (8, 44):
            make_run(tmp_path, "resnet", depth, 0.20 + 0.003 * seed, seed=seed, block="post")
            make_run(tmp_path, "resnet", depth, preact + 0.003 * seed, seed=seed, block="preact")
    runs, metrics = collect(tmp_path)
    table = preactivation.block_table(runs)
    assert sorted(table["block"]) == ["post", "post", "preact", "preact"]
    fig = preactivation.figure(metrics, runs)
    assert len(fig.axes) == 2  # one panel per depth
    row = claim(runs, 13)
    assert row.verdict == verdict and "resnet-44" in row.measured
    # the paper's verdict stays with the post-activation nets
    (v,) = deg.verdicts(runs)
    assert v.resnet.depths == [8, 44] and v.resnet.final[0] == pytest.approx(0.20, abs=0.02)


@pytest.mark.parametrize(("deep", "verdict"), [(0.09, "supported"), (0.25, "contradicted")])
def test_dense_nets_beside_plain_and_residual(tmp_path, deep, verdict):
    for seed in SEEDS:
        make_run(tmp_path, "plain", 8, 0.10, seed=seed)
        make_run(tmp_path, "plain", 44, 0.20, seed=seed)
        make_run(tmp_path, "dense", 40, 0.10 + 0.003 * seed, seed=seed, growth_rate=12)
        make_run(tmp_path, "dense", 100, deep + 0.003 * seed, seed=seed, growth_rate=12)
    runs, metrics = collect(tmp_path)
    assert set(runs["family"]) == {"plain", "dense"}
    assert claim(runs, 14).verdict == verdict
    fig = deg.fig6(metrics)
    assert [ax.get_title() for ax in fig.axes] == ["plain networks", "dense networks"]


def test_norm_free_residual_nets(tmp_path):
    for seed in SEEDS:
        make_run(tmp_path, "resnet", 20, 0.10 + 0.003 * seed, seed=seed)
        make_run(tmp_path, "resnet", 20, 0.11 + 0.003 * seed, seed=seed, norm="none",
                 init="fixup")  # fmt: skip
    runs = collect(tmp_path)[0]
    table = normalization.norm_table(runs).set_index(["normalization", "init"])
    assert table.loc[("none", "fixup"), "outcome"] == "trains"
    row = claim(runs, 15)
    assert row.verdict == ledger.SUPPORTED and "+1.0 points" in row.measured
    # one diverged norm-free run keeps it from training but does not decide alone
    make_run(tmp_path, "resnet", 20, 0.5, seed=3, status="diverged", norm="none", init="fixup")
    row = claim(collect(tmp_path)[0], 15)
    assert row.verdict == ledger.UNDECIDED and "1 of 4 runs diverged" in row.measured
    assert f"diverged in fewer than {MIN_SEEDS} seeds" in row.why and "fixup" in row.why
    # diverged in MIN_SEEDS distinct seeds, it fails
    for seed in (4, 5):
        make_run(tmp_path, "resnet", 20, 0.5, seed=seed, status="diverged", norm="none",
                 init="fixup")  # fmt: skip
    row = claim(collect(tmp_path)[0], 15)
    assert row.verdict == ledger.CONTRADICTED and "3 of 6 runs diverged" in row.measured


def norm_free_diverged(root, seeds):
    """BN residual nets over three seeds and a Fixup net whose every run (one per seed in
    ``seeds``) diverged."""
    for seed in SEEDS:
        make_run(root, "resnet", 20, 0.10 + 0.003 * seed, seed=seed)
    for seed in seeds:
        make_run(root, "resnet", 20, 0.5, seed=seed, status="diverged", norm="none", init="fixup")
    return collect(root)[0]


def test_one_diverged_run_of_a_one_seed_init_does_not_contradict(tmp_path):
    row = claim(norm_free_diverged(tmp_path, [0]), 15)
    assert row.verdict == ledger.UNDECIDED, row
    assert "fixup: 1 of 1 runs diverged, none finished" in row.measured
    assert f"diverged in fewer than {MIN_SEEDS} seeds" in row.why


def test_an_init_diverged_at_min_seeds_contradicts(tmp_path):
    row = claim(norm_free_diverged(tmp_path, range(MIN_SEEDS)), 15)
    assert row.verdict == ledger.CONTRADICTED, row
    assert f"fixup: {MIN_SEEDS} of {MIN_SEEDS} runs diverged, none finished" in row.measured
    (found,) = normalization.norm_free_gaps(collect(tmp_path)[0])
    assert (found["diverged"], found["diverged_seeds"]) == (MIN_SEEDS, MIN_SEEDS)


def test_diverged_seeds_count_seeds_not_runs():
    """Runs repeated under one seed are one seed: three diverged rows of two seeds are two."""
    runs = pd.DataFrame({"status": ["diverged", "diverged", "diverged", "finished"],
                         "seed": [0, 0, 1, 2]})  # fmt: skip
    assert shortcut_variants.diverged_seeds(runs) == 2
    assert shortcut_variants.diverged_text(3, 4, 2) == "3 of 4 runs diverged (2 distinct seeds)"


def test_one_diverged_run_of_a_one_seed_variant_does_not_decide(tmp_path):
    """Identity and a gating variant within the margin over three seeds, and a dropout variant
    with one run, diverged: it is reported but does not count as worse, so the row stays open
    (before, it made one of two variants "worse" and the row "supported" with the conv one)."""
    for seed in SEEDS:
        make_run(tmp_path, "resnet", 20, 0.10 + 0.002 * seed, seed=seed,
                 shortcut_variant="identity")  # fmt: skip
        make_run(tmp_path, "resnet", 20, 0.30 + 0.002 * seed, seed=seed,
                 shortcut_variant="conv1x1")  # fmt: skip
        make_run(tmp_path, "resnet", 20, 0.10 + 0.003 * seed, seed=seed,
                 shortcut_variant="shortcut_gating", gate_bias=-6.0)  # fmt: skip
    make_run(tmp_path, "resnet", 20, 0.5, status="diverged", shortcut_variant="dropout")
    runs = collect(tmp_path)[0]
    leads = shortcut_variants.identity_lead(runs)
    assert len(leads) == 3
    (dropout,) = [lead for lead in leads if lead.name.startswith("dropout")]
    assert (dropout.diverged, dropout.diverged_seed_count, dropout.diverges) == (1, 1, False)
    row = claim(runs, 12)
    assert row.verdict == ledger.UNDECIDED, row
    assert "1 of 1 runs diverged, none finished" in row.measured
    assert f"diverged in fewer than {MIN_SEEDS} seeds" in row.why and "dropout" in row.why


def test_diverged_seeds_of_one_variant_are_one_variant_and_count_as_worse(tmp_path):
    """Three diverged seeds of one dropout setting are one entry, worse than identity; with a
    gating variant within the margin that is one of two worse: not more than half, so open
    (before, three diverged entries made it three of four and "supported")."""
    for seed in SEEDS:
        make_run(tmp_path, "resnet", 20, 0.10 + 0.002 * seed, seed=seed,
                 shortcut_variant="identity")  # fmt: skip
        make_run(tmp_path, "resnet", 20, 0.10 + 0.003 * seed, seed=seed,
                 shortcut_variant="shortcut_gating", gate_bias=-6.0)  # fmt: skip
        make_run(tmp_path, "resnet", 20, 0.5, seed=seed, status="diverged",
                 shortcut_variant="dropout")  # fmt: skip
    runs = collect(tmp_path)[0]
    leads = shortcut_variants.identity_lead(runs)
    assert len(leads) == 2
    (dropout,) = [lead for lead in leads if lead.name.startswith("dropout")]
    assert dropout.diverges and dropout.diverged == MIN_SEEDS
    row = claim(runs, 12)
    assert row.verdict == ledger.UNDECIDED, row
    assert "shortcut_gating" in row.why and "dropout" not in row.why
    # with a second variant clearly worse, two of three are worse: supported
    for seed in SEEDS:
        make_run(tmp_path, "resnet", 20, 0.30 + 0.002 * seed, seed=seed,
                 shortcut_variant="conv1x1")  # fmt: skip
    row = claim(collect(tmp_path)[0], 12)
    assert row.verdict == ledger.SUPPORTED, row
    assert f"dropout (0.5) {MIN_SEEDS} of {MIN_SEEDS} runs diverged, none finished" in row.measured


def test_report_walks_the_design_questions(tmp_path):
    runs = variant_sweep(tmp_path / "sweep")
    metrics = collect(tmp_path / "sweep")[1]
    report = write_analysis(runs, metrics, tmp_path / "out")["report"].read_text()
    assert "## Shortcut variants (He et al. 2016, Table 1 style)" in report
    assert (tmp_path / "out" / "shortcut_variants.csv").is_file()
    questions = report.split("## Questions", 1)[1].split("\n## ", 1)[0]
    assert "| Post- vs pre-activation (He et al. 2016)" in questions
    assert "not answered" in questions.split("Post- vs pre-activation")[1].split("\n")[0]
    ledger_part = report.split("## Claims ledger", 1)[1].split("\n## ", 1)[0]
    assert "Identity shortcuts train best" in ledger_part and "| supported" in ledger_part


def test_a_sweep_of_new_designs_trains_and_analyses(tmp_path):
    """A dense net, a pre-activation net and a Fixup net train through the entry point in one
    multirun; the analysis reports them and skips what is not defined for them (no crash)."""
    from conftest import TINY, run_train

    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.")]
    result = run_train(
        *tiny,
        "--multirun",
        "+net=dense22_k8,resnet20_w8",
        "model.block=post",
        "trainer.max_steps=6",
        "eval_every=3",
        "threads=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode != 0  # densenet has no model.block: refused with one line
    assert "block" in result.stderr and "Traceback" not in result.stderr
    for net, extra in (
        ("dense22_k8", []),
        ("resnet20_w8", ["model.block=preact"]),
        ("resnet44_w8_fixup", ["model.depth=8"]),
    ):
        result = run_train(
            *tiny, f"+net={net}", *extra, "trainer.max_steps=6", "eval_every=3", "threads=1",
            f"hydra.run.dir={sweep / net}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    runs, metrics = collect(sweep)
    assert sorted(runs["net"]) == ["dense-22", "resnet-20", "resnet-8"]
    assert set(runs["status"]) == {"finished"}
    report = write_analysis(runs, metrics, tmp_path / "out")["report"].read_text()
    assert "dense networks" in str(deg.fig6(metrics).axes[-1].get_title())
    assert "| dense-22" in report  # in the final-errors table
    assert "## Normalization and initialization" in report


def test_one_seed_cannot_rank_designs(tmp_path):
    """One seed each shows no seed-to-seed spread: the ledger does not decide, 1.5 or 10 points
    apart."""
    for root, other in ((tmp_path / "close", 0.175), (tmp_path / "far", 0.29)):
        make_run(root, "resnet", 44, 0.19, shortcut_variant="identity")
        make_run(root, "resnet", 44, other, shortcut_variant="shortcut_gating", gate_bias=-6.0)
    for root in ("close", "far"):
        row = claim(collect(tmp_path / root)[0], 12)
        assert row.verdict == ledger.UNDECIDED and "shortcut_gating" in row.why
        assert "no interval" in row.measured


def test_mixed_designs_keep_the_verdict_to_the_paper_design_and_say_so(tmp_path):
    """Plain nets with post- and pre-activation residual nets: the verdict, Fig. 6 and the
    convergence table use the post-activation ones, and the report names the others."""
    for seed in SEEDS:
        for depth, plain, res in ((8, 0.10, 0.10), (44, 0.20, 0.08)):
            make_run(tmp_path, "plain", depth, plain, seed=seed)
            make_run(tmp_path, "resnet", depth, res, seed=seed, block="post")
            make_run(tmp_path, "resnet", depth, 0.5, seed=seed, block="preact")
    runs, metrics = collect(tmp_path)
    (verdict,) = deg.verdicts(runs)
    assert verdict.reproduced and verdict.resnet.final[-1] == pytest.approx(0.08, abs=0.02)
    out = write_analysis(runs, metrics, tmp_path / "out")
    report = out["report"].read_text()
    assert "6 finished run(s) of other designs left out" in report and "preact" in report
    table = pd.read_csv(out["convergence"])
    assert (table["seeds"] == 3).all()  # not 6: the preact runs are not pooled in
    # only post-activation preact pairs appear in the paper's Table 6 column
    assert "## Post- vs pre-activation" in report
