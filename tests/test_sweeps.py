"""Sweeps that survive: resume after SIGKILL, skip finished runs, contain divergence and crashes,
run through submitit, and record where each run came from. All through real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT, TINY, run_train, wait_for
from degradation.config import register as register_resolvers
from degradation.rundirs import config_hash

HASHED_NAME = re.compile(r"^(plain|resnet)\d+(-[BC])?(-w\d+)?-\w+-seed\d+-[0-9a-f]{8}$")


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_sigkilled_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    args = [*TINY, "trainer.max_steps=160", "eval_every=20", "seed=2"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    result = run_train(*args, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]

    command = [sys.executable, str(ROOT / "experiments" / "train.py"), *args,
               f"hydra.run.dir={broken}"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = broken / "checkpoints" / "last.ckpt"
    wait_for(checkpoint.is_file, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert summary_of(broken)["status"] == "running"  # killed mid-run, no chance to say so

    result = run_train(*args, f"hydra.run.dir={broken}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr
    summary, reference = summary_of(broken), summary_of(whole)
    assert summary["status"] == "finished" and summary["attempts"] == 2
    assert 20 <= summary["resumed_from_step"] < 160 and summary["resumed_from_step"] % 20 == 0
    resumed = pd.read_csv(broken / "metrics.csv")
    expected = pd.read_csv(whole / "metrics.csv")
    assert resumed["step"].tolist() == expected["step"].tolist()  # no step missing or repeated
    pd.testing.assert_frame_equal(resumed, expected, check_exact=False, rtol=1e-6, atol=1e-7)
    for key in ("final_train_error", "final_train_loss", "final_test_error", "final_test_loss"):
        assert summary[key] == pytest.approx(reference[key], rel=1e-6)


def test_run_directory_is_named_by_its_config_and_a_finished_run_is_skipped(tmp_path):
    args = [*TINY, "model=resnet", "model.shortcut=B", "trainer.max_steps=5", "eval_every=5"]
    first = run_train(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert HASHED_NAME.match(run_dir.name) and run_dir.name.startswith("resnet8-B-w8-synthetic")
    metrics_time = (run_dir / "metrics.csv").stat().st_mtime_ns

    again = run_train(*args, "threads=1", cwd=tmp_path)  # a key that does not change the result
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping" in again.stderr and "already finished" in again.stderr
    assert [p.name for p in (tmp_path / "outputs" / "runs").iterdir()] == [run_dir.name]
    assert (run_dir / "metrics.csv").stat().st_mtime_ns == metrics_time

    other = run_train(*args, "seed=1", cwd=tmp_path)
    assert other.returncode == 0, other.stderr[-3000:]
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 2


def hydra_config(*overrides: str):
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_config_hash_ignores_only_what_does_not_change_the_result():
    base = config_hash(hydra_config("model.depth=20"))
    assert base == config_hash(hydra_config("model.depth=20"))
    for same in ("threads=1", "data_dir=/elsewhere", "speed.channels_last=false",
                 "callbacks.gradients.every=10", "data.eval_batch_size=1000"):  # fmt: skip
        assert config_hash(hydra_config("model.depth=20", same)) == base, same
    for different in (
        "model.depth=32",
        "seed=1",
        "optimizer.lr=0.05",
        "trainer.max_steps=10",
        "data.batch_size=64",
        "model=resnet",
        "trainer.precision=32-true",
    ):
        assert config_hash(hydra_config("model.depth=20", different)) != base, different


def test_relaunched_sweep_skips_every_finished_run(tmp_path):
    args = ["-m", *TINY, "model=plain,resnet", "trainer.max_steps=4", "eval_every=4",
            f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    first = run_train(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    summaries = sorted(tmp_path.glob("*/summary.json"))
    assert len(summaries) == 2 and all(HASHED_NAME.match(p.parent.name) for p in summaries)
    stamps = [p.stat().st_mtime_ns for p in summaries]

    again = run_train(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipping") == 2
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*/summary.json"))] == stamps


def test_sweep_with_a_diverging_and_a_crashing_job_finishes_the_others(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", *TINY, "trainer.max_steps=30", "eval_every=10", "optimizer.lr=0.1,1e12",
        "optimizer._target_=torch.optim.SGD,torch.optim.Adam", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    # The jobs that fail in training (Adam takes no momentum: its optimizer cannot be made; a
    # negative momentum is now refused before anything is written) make the sweep's exit status
    # non-zero, after all jobs ran.
    assert result.returncode != 0
    assert "unexpected keyword argument 'momentum'" in result.stderr
    summaries = {p.parent.name: summary_of(p.parent) for p in sweep.glob("*/summary.json")}
    statuses = sorted(s["status"] for s in summaries.values())
    assert statuses == ["diverged", "failed", "failed", "finished"]
    diverged = next(s for s in summaries.values() if s["status"] == "diverged")
    assert 0 <= diverged["diverged_at_step"] < 30 and "loss became" in diverged["error"]
    failed = next(s for s in summaries.values() if s["status"] == "failed")
    assert "momentum" in failed["error"]

    analysis = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(sweep)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    report = (sweep / "report.md").read_text()
    assert "1 diverged" in report and "2 failed" in report and "1 finished" in report
    assert f"diverged at step {diverged['diverged_at_step']}" in report
    table = pd.read_csv(sweep / "table.csv")
    assert table["not finished"].str.contains("diverged").any()

    # Launched again: the finished and the diverged runs are skipped, the failed ones retried.
    again = run_train(
        "-m", *TINY, "trainer.max_steps=30", "eval_every=10", "optimizer.lr=0.1,1e12",
        "optimizer.momentum=0.9", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert again.returncode == 0 and again.stderr.count("skipping") == 2


def test_two_job_sweep_through_the_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_train(
        "-m", *TINY, "model=plain,resnet", "trainer.max_steps=4", "eval_every=4",
        "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [summary_of(p.parent) for p in tmp_path.glob("*/summary.json")]
    assert sorted(s["family"] for s in summaries) == ["plain", "resnet"]
    assert all(s["status"] == "finished" for s in summaries)
    assert list(tmp_path.glob(".submitit/*/*_result.pkl"))  # submitit really ran the jobs


def test_launcher_configs_compose():
    slurm = hydra_config("hydra/launcher=slurm").hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    for key in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
                "array_parallelism", "max_num_timeout"):  # fmt: skip
        assert key in slurm
    parallel = hydra_config("hydra/launcher=parallel").hydra.launcher
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2


def test_summary_records_provenance(tmp_path):
    result = run_train(*TINY, "trainer.max_steps=2", "eval_every=2", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    provenance = summary_of(tmp_path)["provenance"]
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if git.returncode == 0:
        assert provenance["git"]["commit"] == git.stdout.strip()
        assert isinstance(provenance["git"]["dirty"], bool)
    import pytorch_lightning
    import torch

    assert provenance["versions"]["torch"] == torch.__version__
    assert provenance["versions"]["pytorch-lightning"] == pytorch_lightning.__version__
    assert provenance["device"].startswith("cpu") or provenance["device"].startswith("cuda")
    assert provenance["host"] == os.uname().nodename


def test_only_a_change_to_the_code_makes_a_run_dirty(tmp_path):
    """Re-making results/ (or editing README) in place is not a change of the code."""
    from degradation.launch import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "report.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "results" / "report.md").write_text("re-made\n")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    state = git_state(tmp_path)
    assert state["dirty"] is True and state["changed"] == ["src/code.py"]


def test_a_new_module_not_yet_in_git_makes_a_run_dirty(tmp_path):
    from degradation.launch import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (tmp_path / "src" / "new.py").write_text("y = 1\n")
    state = git_state(tmp_path)
    assert state["dirty"] is True and state["changed"] == ["src/new.py"]
