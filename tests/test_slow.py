"""Longer runs on real data (``pytest -m slow``)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_train
from degradation.analysis.degradation import verdicts
from degradation.data import FASHION_MNIST_SYSTEM_DIR
from degradation.results import collect

pytestmark = pytest.mark.slow


NO_DEBIAN_DATA = not Path(FASHION_MNIST_SYSTEM_DIR).is_dir()


@pytest.mark.skipif(NO_DEBIAN_DATA, reason="Debian's dataset-fashion-mnist not installed")
@pytest.mark.timeout(1300)  # beyond the default 300 s: the run itself may take 1200
def test_plain20_learns_real_fashion_mnist_in_300_iterations(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "model=plain",
        "model.depth=20",
        "trainer.max_steps=300",
        "eval_every=100",
        f"data_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"] == "fashion_mnist" and summary["steps"] == 300
    # Chance is 90% error on ten balanced classes.
    assert summary["final_train_error"] < 0.35
    assert summary["final_test_error"] < 0.5
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics.dropna(subset=["test_error"])["step"].tolist() == [100, 200, 300]


@pytest.mark.skipif(NO_DEBIAN_DATA, reason="Debian's dataset-fashion-mnist not installed")
@pytest.mark.timeout(1900)  # the whole quick preset: 4 to 9 minutes on 2 cores
def test_quick_preset_shows_degradation_and_the_residual_fix(tmp_path):
    sweep = tmp_path / "quick"
    result = run_train("experiment=quick", f"hydra.sweep.dir={sweep}", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    runs, _ = collect(sweep)
    assert (runs["status"] == "finished").all() and len(runs) == 6
    (verdict,) = verdicts(runs)
    assert verdict.degradation and verdict.residual_fix
    analyze = [sys.executable, str(ROOT / "experiments" / "analyze.py"), str(sweep)]
    assert subprocess.run(analyze, capture_output=True).returncode == 0
    report = (sweep / "report.md").read_text()
    assert "residual nets of the same depth do not, as in the paper" in report
