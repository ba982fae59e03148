"""Nothing lost when things go wrong: unreadable checkpoints, a second launch of a running run,
a process that died without a word, a crash inside a sweep, bad settings. Real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, TINY, run_train, wait_for
from degradation.results import collect
from degradation.rundirs import RunLock, RunLocked, run_status, write_summary

TRAIN = [*TINY, "eval_every=10", "seed=3"]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def died_at_step_20(run_dir: Path) -> None:
    """A run trained to step 20 whose process then died: the summary still says running."""
    result = run_train(*TRAIN, "trainer.max_steps=20", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(run_dir)
    summary["status"] = "running"
    write_summary(run_dir, summary)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["final.ckpt", "last.ckpt", "previous.ckpt"]


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    run_dir = tmp_path / "run"
    died_at_step_20(run_dir)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint at all")

    result = run_train(*TRAIN, "trainer.max_steps=40", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    unreadable = [line for line in result.stderr.splitlines() if "is unreadable" in line]
    assert len(unreadable) == 1 and "last.ckpt" in unreadable[0]
    assert "resuming from the older checkpoint" in result.stderr and "(step 10)" in result.stderr
    summary = summary_of(run_dir)
    assert summary["status"] == "finished" and summary["steps"] == 40
    assert summary["resumed_from_step"] == 10 and summary["attempts"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt.corrupt").is_file()  # kept aside, not in the way
    steps = pd.read_csv(run_dir / "metrics.csv")["step"].tolist()
    assert steps == list(range(41))  # no step missing or repeated


def test_no_readable_checkpoint_restarts_from_scratch_with_a_warning(tmp_path):
    run_dir = tmp_path / "run"
    died_at_step_20(run_dir)
    for name in ("last.ckpt", "previous.ckpt"):
        (run_dir / "checkpoints" / name).write_bytes(b"\x80\x02garbage")

    result = run_train(*TRAIN, "trainer.max_steps=30", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("is unreadable") == 2
    assert "training this run again from step 0" in result.stderr
    summary = summary_of(run_dir)
    assert summary["status"] == "finished" and summary["steps"] == 30
    assert summary["resumed_from_step"] is None
    assert pd.read_csv(run_dir / "metrics.csv")["step"].tolist() == list(range(31))


def test_a_finished_run_is_never_touched_again(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(*TRAIN, "trainer.max_steps=10", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"damaged after the end")
    before = (run_dir / "metrics.csv").read_bytes(), summary_of(run_dir)
    again = run_train(*TRAIN, "trainer.max_steps=10", f"hydra.run.dir={run_dir}")
    assert again.returncode == 0 and "already finished" in again.stderr
    assert ((run_dir / "metrics.csv").read_bytes(), summary_of(run_dir)) == before


def test_second_launch_of_a_running_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    write_summary(run_dir, {"status": "running", "pid": os.getpid(),
                            "provenance": {"host": os.uname().nodename}})  # fmt: skip
    with RunLock(run_dir):  # this test process plays the live trainer
        assert run_status(run_dir, summary_of(run_dir)) == "running"
        with pytest.raises(RunLocked, match="another process"), RunLock(run_dir):
            pass
        result = run_train(*TRAIN, "trainer.max_steps=10", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert f"pid {os.getpid()}" in result.stderr and "not starting a second one" in result.stderr
    assert "Traceback" not in result.stderr
    assert summary_of(run_dir)["status"] == "running"  # untouched
    assert not (run_dir / "metrics.csv").exists()


def test_status_of_a_run_whose_process_died():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = os.uname().nodename
    summary = {"status": "running", "pid": dead.pid, "provenance": {"host": host}}
    # No lock file (a run from before locks): the pid tells, on the machine that ran it.
    assert run_status(Path("/nonexistent"), summary) == "crashed"
    assert run_status(Path("/nonexistent"), {**summary, "pid": os.getpid()}) == "running"
    elsewhere = {**summary, "provenance": {"host": "another-machine"}}
    assert run_status(Path("/nonexistent"), elsewhere) == "running"  # cannot tell: say so
    assert run_status(Path("/nonexistent"), None) == "incomplete"
    assert run_status(Path("/nonexistent"), {"status": "finished"}) == "finished"


def test_killed_run_is_reported_crashed_then_resumed(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TRAIN, "trainer.max_steps=400", "eval_every=20"]
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), *args,
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for((run_dir / "checkpoints" / "last.ckpt").is_file, process)
    process.send_signal(signal.SIGKILL)  # as the out-of-memory killer would
    process.wait()

    runs, _ = collect(tmp_path)
    assert runs["status"].tolist() == ["crashed"]
    analysis = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert "1 crashed" in (tmp_path / "report.md").read_text()

    result = run_train(*args, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(run_dir)
    assert summary["status"] == "finished" and summary["attempts"] == 2
    assert summary["resumed_from_step"] >= 20


def test_a_crash_in_a_parallel_sweep_ends_that_run_only(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TRAIN, "trainer.max_steps=600", "eval_every=20", "model=plain,resnet",
            "hydra/launcher=parallel", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    plain = lambda: next(sweep.glob("plain*"), None)  # noqa: E731
    wait_for(lambda: plain() and (plain() / "checkpoints" / "last.ckpt").is_file(), process)
    os.kill(summary_of(plain())["pid"], signal.SIGSEGV)  # the crash of issue 12, in one run
    _, stderr = process.communicate(timeout=600)
    assert process.returncode != 0  # the sweep reports its failed job, after all jobs ran
    assert "SIGSEGV" in stderr.decode()

    statuses = {p.parent.name.split("-")[0]: summary_of(p.parent)["status"]
                for p in sweep.glob("*/summary.json")}  # fmt: skip
    assert statuses == {"plain8": "crashed", "resnet8": "finished"}
    runs, _ = collect(sweep)
    assert sorted(runs["status"]) == ["crashed", "finished"]

    again = run_train(*args)  # launched again: the crashed run resumes, the finished is skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipping") == 1
    assert summary_of(plain())["status"] == "finished" and summary_of(plain())["attempts"] == 2


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optimizer.lr=abc", "optimizer.lr: Value 'abc' of type 'str' could not be converted"),
        ("model.depth=deep", "model.depth: Value 'deep' of type 'str' could not be converted"),
        ("model.foo=1", "model.foo: Key 'foo' not in 'PlainNetSchema' (expected one of: depth"),
        ("+model.foo=1", "model.foo: no such key in PlainNetSchema (expected one of: depth"),
        ("trainer.max_stepz=5", "trainer.max_stepz: Key 'max_stepz' not in 'TrainerSchema'"),
        ("data.flip=maybe", "data.flip: Value 'maybe' is not a valid bool"),
    ],
)
def test_wrong_type_or_unknown_key_is_one_line_and_exit_2(tmp_path, override, expected):
    result = run_train(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error" in line]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_bad_setting_in_a_sweep_fails_that_run_only_and_leaves_no_directory(tmp_path):
    result = run_train("-m", *TRAIN, "trainer.max_steps=10", "model=resnet", "model.shortcut=A,D",
                       f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 1
    assert "shortcut must be one of A, B, C; got 'D'" in result.stderr
    assert "crashed" not in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ValueError: resnet8-D-")
    (run_dir,) = [p.parent for p in tmp_path.glob("*/summary.json")]
    assert run_dir.name.startswith("resnet8-w8") and summary_of(run_dir)["status"] == "finished"
    assert not list(tmp_path.glob("resnet8-D-*"))


def test_a_run_being_trained_is_refused_inside_a_sweep_too(tmp_path):
    args = ["-m", *TRAIN, "trainer.max_steps=10", "model=plain", f"hydra.sweep.dir={tmp_path}"]
    first = run_train(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("*/summary.json")]
    summary = summary_of(run_dir)
    summary["status"] = "running"
    write_summary(run_dir, summary)
    config = (run_dir / "config.yaml").read_bytes()
    with RunLock(run_dir):
        again = run_train(*args)
    assert again.returncode == 1
    assert "being trained by another process" in again.stderr
    assert (run_dir / "config.yaml").read_bytes() == config  # the live run's record untouched
    assert summary_of(run_dir)["status"] == "running"
    assert not list(run_dir.glob(".launch-*"))
