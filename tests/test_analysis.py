"""Collection, verdict, figures, tables and report on small synthetic sweeps."""

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from conftest import ROOT, TINY, run_train
from degradation.analysis import degradation as deg
from degradation.analysis import style
from degradation.analysis.degradation import verdict_text, verdicts
from degradation.analysis.final_errors import results_table
from degradation.metrics_file import final_metrics
from degradation.report import write_analysis
from degradation.results import NoRunsError, collect
from degradation.rundirs import write_summary
from degradation.runs import MetricsLogger


def make_run(
    root,
    family,
    depth,
    final,
    seed=0,
    steps=200,
    status="finished",
    data="fashion_mnist",
    width=8,
    eval_every=50,
    write_summary_file=True,
    shortcut="A",
    **design,
):
    """A run directory in the suite's real format whose training error ends near ``final``;
    ``design`` holds further model options (e.g. ``block="preact"``, ``norm="none"``)."""
    residual = family == "resnet"
    tag = "".join(f"-{k}{v}" for k, v in sorted(design.items()))
    name = f"{family}{depth}{shortcut if residual else ''}{tag}-{data}-seed{seed}"
    run_dir = root / name
    model = {"depth": depth, "residual": residual, "width": width, **design}
    if family == "dense":
        model = {"_target_": "degradation.models.densenet", "depth": depth, **design}
    if residual:
        model["shortcut"] = shortcut
    target = {"fashion_mnist": "FashionMNISTDataModule", "cifar10": "CIFAR10DataModule"}[data]
    cfg = {
        "model": model,
        "data": {"_target_": f"degradation.data.{target}"},
        "trainer": {"max_steps": steps},
        "seed": seed,
    }
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    rng = np.random.default_rng(depth * 100 + seed)
    logger = MetricsLogger(run_dir)
    for step in range(steps):
        err = 0.9 * np.exp(-step / (steps / 8)) + final + rng.normal(0, 0.01)
        logger.log_metrics({"train_error": err, "train_loss": 2 * err, "lr": 0.1}, step)
    for step in range(eval_every, steps + 1, eval_every):
        err = 0.9 * np.exp(-step / (steps / 8)) + final + 0.02
        logger.log_metrics({"test_error": err, "test_loss": 2 * err}, step)
    logger.flush()
    if write_summary_file:
        summary = {
            "run": name,
            "model": f"{family}-{depth}",
            "family": family,
            "depth": depth,
            "width": width,
            "shortcut": shortcut if residual else None,
            "data": data,
            "seed": seed,
            "params": 1000 * depth,
            "max_steps": steps,
            "status": status,
            "steps": steps,
            "wall_time_s": 1.5 * depth,
        }
        summary.update({k: v for k, v in design.items() if k != "norm"})
        if design.get("norm", "batch") != "batch":
            summary["normalization"] = design["norm"]
        if status == "finished":
            summary.update(final_metrics(logger.frame()))
        write_summary(run_dir, summary)
    return run_dir


def degraded_sweep(root, seeds=(0, 1, 2)):
    for seed in seeds:  # the seeds a little apart, as real ones are
        for depth, plain, res in [(8, 0.10, 0.10), (20, 0.15, 0.08), (32, 0.20, 0.07)]:
            make_run(root, "plain", depth, plain + 0.004 * seed, seed=seed)
            make_run(root, "resnet", depth, res + 0.004 * seed, seed=seed)
    return root


def test_collect_reads_every_run_with_its_status(tmp_path):
    degraded_sweep(tmp_path, seeds=(0,))
    make_run(tmp_path, "plain", 44, 0.3, status="failed")
    incomplete = make_run(tmp_path, "plain", 56, 0.3, seed=1, write_summary_file=False)
    runs, metrics = collect(tmp_path)
    assert len(runs) == 8
    status = dict(zip(runs["run"], runs["status"], strict=True))
    assert status["plain44-fashion_mnist-seed0"] == "failed"
    assert status[incomplete.name] == "incomplete"
    assert list(runs["status"]).count("finished") == 6
    row = runs[runs["run"] == incomplete.name].iloc[0]
    assert row["family"] == "plain" and row["depth"] == 56 and row["data"] == "fashion_mnist"
    assert row["steps"] == 200 and 0.25 < row["final_train_error"] < 0.35
    # The metrics table is tidy: one row per run and step, with config fields as columns.
    assert {"run", "step", "family", "depth", "width", "seed", "train_error"} <= set(metrics)
    assert len(metrics[metrics["run"] == incomplete.name]) == 201  # 200 steps + final eval
    assert not metrics.duplicated(["run", "step"]).any()


def test_collect_refuses_empty_and_names_malformed(tmp_path, capsys):
    with pytest.raises(NoRunsError, match="no runs found"):
        collect(tmp_path)
    run_dir = make_run(tmp_path, "plain", 8, 0.1)
    (run_dir / "metrics.csv").write_text("this,is\nnot")
    # a damaged file is named in one line and passed over, not allowed to stop the analysis
    runs, metrics = collect(tmp_path)
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert "no 'step' column" in warning and str(run_dir / "metrics.csv") in warning
    assert runs["run"].tolist() == [run_dir.name] and metrics.empty


def test_verdict_finds_degradation_and_the_residual_fix(tmp_path):
    runs, _ = collect(degraded_sweep(tmp_path))
    (verdict,) = verdicts(runs)
    assert verdict.degradation is True and verdict.residual_fix is True and verdict.reproduced
    assert verdict.plain.depths == [8, 20, 32] and verdict.plain.monotonic()
    assert verdict.plain.rise_final == pytest.approx(0.10, abs=0.01)
    (gap, interval), _ = verdict.gaps[32]
    assert gap == pytest.approx(0.13, abs=0.01) and interval[0] < gap < interval[1]
    text = verdict_text(verdict)
    assert "**Degradation: yes.**" in text and "**Residual fix: yes.**" in text
    assert "+10.0 points" in text or "+9.9 points" in text or "+10.1 points" in text
    assert "residual nets of the same depth do not, as in the paper" in text


def test_verdict_without_degradation(tmp_path):
    for seed in (0, 1, 2):
        for depth, plain, res in [(8, 0.14, 0.14), (20, 0.12, 0.13), (32, 0.115, 0.135)]:
            make_run(tmp_path / "two", "plain", depth, plain + 0.002 * seed, seed=seed)
            make_run(tmp_path / "two", "resnet", depth, res + 0.002 * seed, seed=seed)
    (verdict,) = verdicts(collect(tmp_path / "two")[0])
    assert verdict.degradation is False
    # Residual nets do not beat the plain net.
    assert verdict.residual_fix is False and not verdict.reproduced
    text = verdict_text(verdict)
    assert "**Degradation: no.**" in text and "does not reproduce" in text
    # With one seed, half a point is within a seed's spread: not decided either way.
    for depth, err in [(8, 0.12), (20, 0.11), (32, 0.115)]:
        make_run(tmp_path / "one", "plain", depth, err)
        make_run(tmp_path / "one", "resnet", depth, err)
    (one,) = verdicts(collect(tmp_path / "one")[0])
    assert one.degradation is None and one.residual_fix is None
    assert "**Degradation: not decided.**" in verdict_text(one)


def test_verdict_when_residual_nets_also_degrade(tmp_path):
    for seed in (0, 1, 2):
        for depth, plain, res in [(8, 0.10, 0.05), (32, 0.20, 0.12)]:
            make_run(tmp_path, "plain", depth, plain + 0.003 * seed, seed=seed)
            make_run(tmp_path, "resnet", depth, res + 0.003 * seed, seed=seed)
    (verdict,) = verdicts(collect(tmp_path)[0])
    assert verdict.degradation is True and verdict.residual_fix is False


def test_failed_runs_stay_out_of_the_verdict_but_in_the_report(tmp_path):
    degraded_sweep(tmp_path, seeds=(0,))
    make_run(tmp_path, "plain", 44, 0.9, status="failed")
    runs, metrics = collect(tmp_path)
    (verdict,) = verdicts(runs)
    assert verdict.plain.depths == [8, 20, 32]
    written = write_analysis(runs, metrics, tmp_path / "out")
    report = written["report"].read_text()
    assert re.search(r"plain44-fashion_mnist-seed0\s*\|\s*failed", report)


def test_table_has_mean_std_over_seeds_and_paper_numbers(tmp_path):
    for seed in (0, 1, 2):
        make_run(tmp_path, "resnet", 20, 0.05, seed=seed, data="cifar10", width=16)
        make_run(tmp_path, "plain", 20, 0.07, seed=seed, data="cifar10", width=16)
    table = results_table(collect(tmp_path)[0])
    resnet = table[table["net"] == "resnet-20"].iloc[0]
    assert resnet["seeds"] == 3 and "±" in resnet["train error (%)"]
    assert resnet["paper test error (%)"] == 8.75
    assert pd.isna(table[table["net"] == "plain-20"].iloc[0]["paper test error (%)"])


def test_figures_have_one_line_per_depth_and_labelled_axes(tmp_path):
    runs, metrics = collect(degraded_sweep(tmp_path))
    fig = deg.fig6(metrics)
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert left.get_ylabel() == "error (%)" and left.get_xlabel() == "iterations"
    assert left.get_ylim() == right.get_ylim()
    labels = left.get_legend_handles_labels()[1]
    assert labels == ["plain-8", "plain-20", "plain-32"]
    assert right.get_legend_handles_labels()[1] == ["resnet-8", "resnet-20", "resnet-32"]
    # Dashed (training) and solid (test) line per depth, plus a seed band each.
    assert sum(line.get_linestyle() == "--" for line in left.lines) == 3
    assert len(left.collections) == 6
    fig1 = deg.fig1(metrics)
    assert [ax.get_title() for ax in fig1.axes] == ["training error", "test error"]
    assert fig1.axes[0].get_legend_handles_labels()[1] == ["8-layer", "32-layer"]
    style.save(fig, tmp_path / "fig6.png")
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"


def test_smoothing_is_a_running_mean_per_run():
    metrics = pd.DataFrame(
        {"run": ["a"] * 4 + ["b"] * 4, "step": [0, 1, 2, 3] * 2, "train_error": [1, 0, 1, 0] * 2}
    )
    smoothed = style.smooth_train_error(metrics, fraction=0.5)
    assert smoothed["train_smooth"].tolist() == [1, 0.5, 0.5, 0.5] * 2


def test_write_analysis_writes_everything(tmp_path):
    runs, metrics = collect(degraded_sweep(tmp_path / "sweep"))
    written = write_analysis(runs, metrics, tmp_path / "out", command="python x")
    for name in ("fig6.png", "fig1.png", "table.csv", "table.md", "report.md"):
        assert (tmp_path / "out" / name).is_file()
    report = written["report"].read_text()
    assert "Made by `python x`" in report and "![Fig. 6 style" in report
    assert "Total training wall time: 540 s over 18 runs." in report
    assert pd.read_csv(tmp_path / "out" / "table.csv")["net"].tolist() == [
        "plain-8",
        "plain-20",
        "plain-32",
        "resnet-8",
        "resnet-20",
        "resnet-32",
    ]


def test_analysis_says_what_it_skipped(tmp_path):
    make_run(tmp_path, "resnet", 8, 0.1)
    runs, metrics = collect(tmp_path)
    report = write_analysis(runs, metrics, tmp_path)["report"].read_text()
    assert "fig1: Fig. 1 needs plain runs of at least two depths" in report
    # the question list says which questions the sweep could not answer, and why
    questions = report.split("## Questions", 1)[1].split("\n## ", 1)[0]
    assert "| Layer responses (Fig. 7 style)" in questions and "not answered" in questions
    assert "answered; skipped 1 part(s)" in questions  # Fig. 1 of the degradation question
    assert "Degradation: not measurable" in report


def test_analyze_cli_errors_and_success(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    analyze = [sys.executable, str(ROOT / "experiments" / "analyze.py")]
    result = subprocess.run([*analyze, str(empty)], capture_output=True, text=True)
    assert result.returncode == 2 and "no runs found" in result.stderr
    result = subprocess.run([*analyze, str(tmp_path / "missing")], capture_output=True, text=True)
    assert result.returncode == 2 and "is not a directory" in result.stderr
    degraded_sweep(tmp_path / "sweep", seeds=(0,))
    result = subprocess.run(
        [*analyze, str(tmp_path / "sweep"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"report: {tmp_path / 'out' / 'report.md'}" in result.stdout


def test_tiny_sweep_through_the_entry_point_then_analysis(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        *TINY,
        "model=plain,resnet",
        "model.depth=8,14",
        "trainer.max_steps=30",
        "eval_every=15",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert sorted(s["model"] for s in summaries) == ["plain-14", "plain-8", "resnet-14", "resnet-8"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(sweep)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    report = (sweep / "report.md").read_text()
    assert "## Does it happen?" in report and "**Degradation:" in report
    table = pd.read_csv(sweep / "table.csv")
    assert sorted(table["net"]) == ["plain-14", "plain-8", "resnet-14", "resnet-8"]
    assert (sweep / "fig6.png").is_file() and (sweep / "fig1.png").is_file()
    # The runs kept checkpoints and logged gradients, so the diagnostics are there too.
    for name in ("fig7.png", "grad_profiles.png", "grad_ratios.png", "responses.csv"):
        assert (sweep / name).is_file(), name
    assert len(list(sweep.glob("*/responses.csv"))) == 4
    assert "## Layer responses (Fig. 7 style)" in report and "## Gradient norms" in report


def test_verdict_is_not_decided_when_the_seeds_disagree(tmp_path):
    """Three seeds whose deep plain errors straddle the margin: the interval decides nothing."""
    for seed, deep in ((0, 0.08), (1, 0.15), (2, 0.12)):
        make_run(tmp_path, "plain", 8, 0.10 + 0.002 * seed, seed=seed)
        make_run(tmp_path, "plain", 20, deep, seed=seed)
    (verdict,) = verdicts(collect(tmp_path)[0])
    final, interval = verdict.plain.rise()
    assert final == pytest.approx(0.015, abs=0.01) and interval[0] < 0.01 < interval[1]
    assert verdict.degradation is None and not verdict.reproduced
    text = verdict_text(verdict)
    assert "**Degradation: not decided.**" in text and "95% interval" in text
    assert "**Residual fix: not measurable**" in text
    # one seed each, however far apart: no interval, nothing decided
    (one,) = verdicts(
        collect(tmp_path / "plain20-fashion_mnist-seed1", tmp_path / "plain8-fashion_mnist-seed1")[
            0
        ]
    )
    assert one.degradation is None and "1 seed(s) per net: no intervals" in verdict_text(one)


def test_results_table_gives_the_interval_of_the_mean_test_error(tmp_path):
    runs, _ = collect(degraded_sweep(tmp_path))
    table = results_table(runs)
    row = table[table["net"] == "plain-32"].iloc[0]
    tests = runs.loc[runs["net"] == "plain-32", "final_test_error"].to_numpy(float)
    half = 4.303 * tests.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof) for three seeds
    low, high = (float(x) for x in row["test error 95% interval (%)"].split(" to "))
    assert low == pytest.approx(100 * (tests.mean() - half), abs=0.01)
    assert high == pytest.approx(100 * (tests.mean() + half), abs=0.01)
    single = results_table(collect(tmp_path / "plain32-fashion_mnist-seed0")[0])
    assert single["test error 95% interval (%)"].iloc[0] == ""
