"""Bad input that must not get through, and conventions users rely on: each refusal is one line
naming the key and the value, exit 2, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY, run_train

TRAIN = [*TINY, "eval_every=5", "trainer.max_steps=5"]


def errors_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optimizer.lr=-1", "optimizer.lr=-1.0: must be a positive number"),
        ("model.width=0", "model.width=0: must be a positive number"),
        ("data.batch_size=0", "data.batch_size=0: must be a positive number"),
        ("optimizer.momentum=1.5", "optimizer.momentum=1.5: must be at least 0 and below 1"),
        ("scheduler.milestones=[0,3]", "scheduler.milestones=[0, 3]: must be positive"),
        ("scheduler.warmup_steps=-1", "scheduler.warmup_steps=-1: must be at least 0"),
        ("optimizer.momentum=0", "optimizer.nesterov=true: needs optimizer.momentum above 0"),
    ],
)
def test_a_bad_number_is_one_line_naming_the_key_and_leaves_no_directory(
    tmp_path, override, expected
):
    extra = ["optimizer.nesterov=true"] if override == "optimizer.momentum=0" else []
    result = run_train(*TRAIN, override, *extra, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = errors_of(result)
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_bad_number_in_a_sweep_leaves_no_directory(tmp_path):
    result = run_train("-m", *TRAIN, "optimizer.lr=-1,0.1", f"hydra.sweep.dir={tmp_path}")
    assert "optimizer.lr=-1.0: must be a positive number" in result.stderr
    assert "Traceback" not in result.stderr
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert [s["status"] for s in summaries] == ["finished"]  # the good job trained
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1  # no directory for the bad


def test_summary_records_the_precision_that_ran(tmp_path):
    result = run_train(*TRAIN, "trainer.precision=16", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["precision"] == "bf16-mixed"  # Lightning's choice for 16 on a CPU, not "16"


def test_a_sweep_over_models_takes_keys_only_the_swept_models_have(tmp_path, monkeypatch):
    """The issue's two-option sweep: the default model (plain) has no ``stem``, both swept ones
    do; each job is composed and checked with its own choice, and both train (fp32 forced)."""
    monkeypatch.setenv("DEGRADATION_PRECISION", "32-true")
    result = run_train(
        "-m", "data=synthetic", "data.batch_size=8", "data.num_train=64", "data.num_test=16",
        "data.image_size=56", "model=resnet_imagenet,plain_imagenet", "model.depth=18",
        "model.stem=small", "model.width=4", "trainer.max_steps=2", "eval_every=2",
        "callbacks.progress.refresh_rate=0", f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.parent.name for p in tmp_path.glob("*/summary.json"))
    assert [n.split("-seed")[0] for n in names] == [
        "plain18-smallstem-w4-synthetic",
        "resnet18-smallstem-w4-synthetic",
    ]
    for path in tmp_path.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        assert summary["status"] == "finished" and summary["precision"] == "32-true"
        overrides = (path.parent / ".hydra" / "overrides.yaml").read_text()
        assert "model.stem=small" in overrides  # each job's record as the user wrote it


def test_a_key_no_swept_choice_has_is_still_refused(tmp_path):
    result = run_train("-m", *TRAIN, "model=plain,resnet", "model.stem=small",
                       f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode != 0
    assert "stem" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*/summary.json"))


# ------------------------------------------------------------------------------------------
# Read-only run and sweep directories
# ------------------------------------------------------------------------------------------


def read_only(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with ``folder`` read-only: a read-only bind mount for root (whom file
    modes do not stop), file modes for anyone else."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to make a read-only folder for root")
    mount = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}"'
    wrapped = ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]
    result = subprocess.run(wrapped, capture_output=True, text=True, env=env, cwd=ROOT)
    if "mount:" in result.stderr and "permission denied" in result.stderr.lower():
        pytest.skip("no permission to mount a read-only folder here")
    return result


TRAIN_PY = [sys.executable, str(ROOT / "experiments" / "train.py")]


def test_training_into_a_read_only_directory_is_one_line_and_exit_2(tmp_path):
    result = read_only(tmp_path, [*TRAIN_PY, *TRAIN, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = errors_of(result)
    assert f"cannot write into {tmp_path}" in line and "hydra.run.dir=" in line
    assert "Traceback" not in result.stderr


def test_a_sweep_into_a_read_only_directory_is_one_line_and_exit_2(tmp_path):
    result = read_only(tmp_path, [*TRAIN_PY, "-m", *TRAIN, "model=plain,resnet",
                                  f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = errors_of(result)
    assert "cannot write into" in line and "hydra.sweep.dir=" in line


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = run_train(*TRAIN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_a_finished_run_in_a_read_only_directory_is_skipped(finished_run):
    result = read_only(finished_run, [*TRAIN_PY, *TRAIN, f"hydra.run.dir={finished_run}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already finished" in result.stderr


def test_analysis_of_a_read_only_directory_names_it_and_suggests_out(finished_run, tmp_path):
    analyze = [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(finished_run)]
    refused = read_only(finished_run, analyze)
    assert refused.returncode == 2
    (line,) = [ln for ln in refused.stderr.splitlines() if "error" in ln]
    assert f"cannot write into {finished_run}" in line and "--out" in line
    written = read_only(finished_run, [*analyze, "--out", str(tmp_path / "out")])
    assert written.returncode == 0, written.stderr[-3000:]
    assert (tmp_path / "out" / "report.md").is_file()


# ------------------------------------------------------------------------------------------
# Conventions
# ------------------------------------------------------------------------------------------


def test_hydras_compose_api_works_after_importing_the_package():
    """As in a notebook, in a fresh interpreter: ``import degradation`` is all it takes."""
    code = f"""
import degradation
from hydra import compose, initialize_config_dir
with initialize_config_dir({str(ROOT / "conf")!r}, version_base="1.3"):
    cfg = compose("train", overrides=["model=resnet", "model.depth=20"])
print(cfg.model._target_, cfg.scheduler.milestones, cfg.trainer._target_)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "degradation.models.cifar_net",
        "[32000,",
        "48000]",
        "pytorch_lightning.Trainer",
    ]


def test_the_package_depends_on_pytorch_lightning():
    from importlib.metadata import requires

    names = [r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requires("degradation")]
    assert "pytorch-lightning" in names and "lightning" not in names
