"""Run directories and results/ are shared: every file in them is untrusted. A checkpoint that
carries a pickled call is refused with one line and nothing runs; a damaged file is named in one
line and skipped or recovered, never read silently and never allowed to stop everything else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY, run_train
from degradation.checkpoints import BadFile, load_checkpoint, save_trainer_checkpoint
from degradation.metrics_file import logged_through, read_metrics_file
from degradation.results import collect
from degradation.rundirs import RunLock, write_atomic, write_summary

TRAIN = [*TINY, "eval_every=10", "seed=5"]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


class Payload:
    """What a hostile checkpoint carries: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_payload(checkpoint: Path, marker: Path) -> None:
    """Turn a real checkpoint into one that would run a command when unpickled."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["callbacks"] = {"innocent looking": Payload(marker)}
    torch.save(content, checkpoint)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> Path:
    """A small sweep of two finished runs (plain and residual, depth 8), trained once."""
    sweep = tmp_path_factory.mktemp("sweep")
    result = run_train("-m", *TRAIN, "trainer.max_steps=20", "model=plain,resnet",
                       f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(sweep.glob("*/summary.json"))) == 2
    return sweep


def copy_of(sweep: Path, tmp_path: Path) -> Path:
    target = tmp_path / "sweep"
    shutil.copytree(sweep, target)
    return target


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "analyze.py"), *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Checkpoints that carry code
# ------------------------------------------------------------------------------------------


def test_a_checkpoint_with_a_pickled_call_is_refused_when_read(tmp_path, finished_runs):
    run_dir = next(copy_of(finished_runs, tmp_path).glob("plain*"))
    marker = tmp_path / "ran"
    plant_payload(run_dir / "checkpoints" / "final.ckpt", marker)
    with pytest.raises(BadFile, match="refused: it holds a pickled object") as caught:
        load_checkpoint(run_dir / "checkpoints" / "final.ckpt")
    assert "\n" not in str(caught.value) and caught.value.unsafe
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_with_a_pickled_call(tmp_path, finished_runs):
    run_dir = next(copy_of(finished_runs, tmp_path).glob("plain*"))
    marker = tmp_path / "ran"
    plant_payload(run_dir / "checkpoints" / "last.ckpt", marker)
    summary = summary_of(run_dir)
    summary["status"] = "running"  # its process died: the next launch resumes it
    write_summary(run_dir, summary)
    result = run_train(*TRAIN, "trainer.max_steps=30", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    refused = [line for line in result.stderr.splitlines() if "refused" in line]
    assert len(refused) == 1 and "last.ckpt" in refused[0], result.stderr[-3000:]
    assert not marker.exists()  # nothing ran
    assert "resuming from the older checkpoint" in result.stderr and "(step 10)" in result.stderr
    assert summary_of(run_dir)["status"] == "finished"
    assert pd.read_csv(run_dir / "metrics.csv")["step"].tolist() == list(range(31))


def test_analysis_refuses_a_checkpoint_with_a_pickled_call_and_writes_the_report(
    tmp_path, finished_runs
):
    sweep = copy_of(finished_runs, tmp_path)
    marker = tmp_path / "ran"
    bad = next(sweep.glob("plain*"))
    plant_payload(bad / "checkpoints" / "final.ckpt", marker)
    result = analyze(str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    named = [line for line in result.stderr.splitlines() if "refused" in line]
    assert len(named) == 1 and bad.name in named[0], result.stderr[-3000:]
    assert not marker.exists()
    assert (sweep / "report.md").is_file() and (sweep / "ledger.csv").is_file()
    assert "refused" in (sweep / "report.md").read_text()  # the report says what it skipped


@pytest.mark.parametrize("probe", ["probe_lesions", "probe_landscape"])
def test_probes_refuse_a_checkpoint_with_a_pickled_call(tmp_path, finished_runs, probe):
    sweep = copy_of(finished_runs, tmp_path)
    marker = tmp_path / "ran"
    bad = next(sweep.glob("plain*"))
    plant_payload(bad / "checkpoints" / "final.ckpt", marker)
    command = [sys.executable, str(ROOT / "experiments" / f"{probe}.py"), f"dirs=[{sweep}]",
               f"out={tmp_path / 'probe'}"]  # fmt: skip
    if probe == "probe_lesions":
        command += ["max_images=64", "max_k=2", "draws=1"]
    else:
        command += ["images=64", "steps_1d=3", "steps_2d=3", "hessian_iterations=2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipping")]
    assert len(skipped) == 1 and bad.name in skipped[0] and "refused" in skipped[0]
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# Damaged files
# ------------------------------------------------------------------------------------------


def cut_inside_row(path: Path, step: int) -> str:
    """Cut a metrics file in the middle of the row of ``step``; return the row as it was."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    (index,) = [i for i, line in enumerate(lines) if line.split(",", 1)[0] == str(step)]
    row = lines[index]
    path.write_text("".join(lines[:index]) + row[: row.index(",") + 5])  # "15,0.1": a number
    return row


def test_a_cut_metrics_file_is_named_and_its_cut_row_dropped_on_analysis(
    tmp_path, finished_runs, capsys
):
    sweep = copy_of(finished_runs, tmp_path)
    run_dir = next(sweep.glob("plain*"))
    intact = pd.read_csv(run_dir / "metrics.csv")
    cut_inside_row(run_dir / "metrics.csv", 15)
    runs, metrics = collect(sweep)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert run_dir.name in warnings[0] and "(step 15) cut short" in warnings[0]
    steps = metrics.loc[metrics["run"] == run_dir.name, "step"].tolist()
    assert steps == list(range(15))  # the cut row is not read with its cut value
    late = runs.set_index("run").at[run_dir.name, "late_train_error"]
    assert late == pytest.approx(intact["train_error"].iloc[:15].tail(3).mean())


def test_resume_never_continues_past_a_damaged_metrics_file(tmp_path, finished_runs):
    """The metrics were cut inside step 15's row while the last checkpoint is at step 20: the run
    resumes from the checkpoint at step 10 instead, so no step is lost or repeated."""
    run_dir = next(copy_of(finished_runs, tmp_path).glob("plain*"))
    original = pd.read_csv(run_dir / "metrics.csv")
    cut_inside_row(run_dir / "metrics.csv", 15)
    summary = summary_of(run_dir)
    summary["status"] = "running"
    write_summary(run_dir, summary)
    result = run_train(*TRAIN, "trainer.max_steps=20", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(step 15) cut short" in result.stderr
    assert "is ahead of the intact rows" in result.stderr and "(step 10)" in result.stderr
    after = pd.read_csv(run_dir / "metrics.csv")
    assert after["step"].tolist() == list(range(21))
    assert after["train_loss"].notna().sum() == 20 and after["test_error"].notna().sum() == 2
    # the re-trained steps are the ones the first attempt logged (resume is exact)
    pd.testing.assert_series_equal(after["train_loss"], original["train_loss"], rtol=1e-5)


def test_metrics_reader_names_every_kind_of_damage(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,train_error,test_error\n0,0.5,\n1,0.4\n2,0.x,\n3,0.3,0.9\n3,0.3,0.9\n5,0.2,"
    )
    frame, problems = read_metrics_file(path)
    assert frame["step"].tolist() == [0, 3]
    (problem,) = problems
    for part in ("line 3 (step 1) has 2 fields", "line 4 (step 2) is not numbers",
                 "(step 3) out of order", "and 1 more"):  # fmt: skip
        assert part in problem, problem
    assert logged_through(frame) == 1
    intact = "step,train_error\n0,0.5\n1,0.4\n"
    path.write_text(intact)
    assert read_metrics_file(path)[1] == [] and logged_through(read_metrics_file(path)[0]) == 2


@pytest.mark.parametrize(
    "name, damage",
    [("checkpoints/final.ckpt", "cut"), ("checkpoints/final.ckpt", b""),
     ("weights.pt", b"not a torch file at all")],
)  # fmt: skip
def test_a_damaged_weights_file_is_skipped_in_one_line_and_the_report_written(
    tmp_path, finished_runs, name, damage
):
    sweep = copy_of(finished_runs, tmp_path)
    bad = next(sweep.glob("resnet*"))
    if name == "weights.pt":  # a shipped run: weights only, no checkpoints
        from degradation.analysis.trained import export_weights

        export_weights(bad)
        shutil.rmtree(bad / "checkpoints")
    path = bad / name
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "cut" else damage)
    result = analyze(str(sweep))
    assert result.returncode == 0, result.stderr[-3000:]
    named = [line for line in result.stderr.splitlines() if "unreadable" in line]
    assert len(named) == 1 and bad.name in named[0] and name.split("/")[-1] in named[0]
    assert "Traceback" not in result.stderr
    report = (sweep / "report.md").read_text()
    assert "Claims ledger" in report and "unreadable" in report


def test_a_damaged_summary_is_named_and_the_run_keeps_its_books(tmp_path, finished_runs):
    run_dir = next(copy_of(finished_runs, tmp_path).glob("plain*"))
    before = summary_of(run_dir)
    (run_dir / "summary.json").write_text('{"status": "runn')
    result = run_train(*TRAIN, "trainer.max_steps=30", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    named = [line for line in result.stderr.splitlines() if "summary.json is unreadable" in line]
    assert len(named) == 1
    after = summary_of(run_dir)
    assert after["status"] == "finished" and after["steps"] == 30
    assert after["started_at"] == before["started_at"]  # from the checkpoint's record
    assert after["attempts"] == before["attempts"] + 1


def test_a_refused_launch_leaves_the_running_runs_files_untouched(tmp_path, finished_runs):
    run_dir = next(copy_of(finished_runs, tmp_path).glob("plain*"))
    summary = summary_of(run_dir)
    summary["status"] = "running"
    write_summary(run_dir, summary)
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    with RunLock(run_dir):  # this test process plays the live trainer
        again = run_train(*TRAIN, "model.width=16", "trainer.max_steps=77",
                          f"hydra.run.dir={run_dir}")  # fmt: skip
    assert again.returncode == 2 and "not starting a second one" in again.stderr
    assert sorted(p for p in run_dir.rglob("*") if p.is_file()) == files
    assert {p: p.read_bytes() for p in files} == before  # .hydra/*, train.log included


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    write_atomic(path, "step\n0\n")

    def disk_full(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "step\n0\n1\n")
    monkeypatch.undo()
    assert path.read_text() == "step\n0\n" and sorted(tmp_path.iterdir()) == [path]


def test_a_checkpoint_write_that_fails_leaves_last_and_previous_as_they_were(tmp_path):
    last, previous = tmp_path / "last.ckpt", tmp_path / "previous.ckpt"
    last.write_bytes(b"last"), previous.write_bytes(b"previous")

    class FullDisk:
        is_global_zero = True

        def save_checkpoint(self, path, weights_only=False):
            Path(path).write_bytes(b"half a checkp")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        save_trainer_checkpoint(FullDisk(), last, previous=previous)
    assert (last.read_bytes(), previous.read_bytes()) == (b"last", b"previous")
    assert sorted(tmp_path.iterdir()) == [last, previous]


def test_a_question_that_fails_is_named_and_the_report_still_written(
    tmp_path, finished_runs, monkeypatch
):
    from degradation.analysis import final_errors
    from degradation.report import AnalysisIncomplete, write_analysis

    def broken(ctx):
        raise KeyError("a column a damaged table lacks")

    monkeypatch.setattr(final_errors, "section", broken)
    runs, metrics = collect(finished_runs)
    with pytest.raises(AnalysisIncomplete, match="Final errors") as caught:
        write_analysis(runs, metrics, tmp_path, progress=lambda _: None, formats=("png",))
    report = (tmp_path / "report.md").read_text()
    assert "Claims ledger" in report and "failed (KeyError" in report
    assert caught.value.written["report"] == tmp_path / "report.md"
