"""experiments/benchmark.py runs end to end and reports what it measured (no timing asserts)."""

import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT


def test_benchmark_writes_measurements_and_consistent_ratios(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--depths", "8",
         "--families", "plain", "--steps", "2", "--warmup", "1", "--repeats", "1",
         "--num-train", "256", "--num-test", "128", "--workers", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "training_speed.csv")
    assert sorted(rows["path"]) == ["a", "a0", "b", "c"]
    assert (rows["img_per_s"] > 0).all()
    rate = rows.set_index("path")["img_per_s"]
    report = (tmp_path / "training_speed.md").read_text()
    lines = [line.split("|") for line in report.splitlines() if line.startswith("|")]
    table = dict(zip([h.strip() for h in lines[0]], [c.strip() for c in lines[2]], strict=True))
    assert float(table["a/b"]) == pytest.approx(rate["a"] / rate["b"], abs=2e-3)
    assert float(table["a/c"]) == pytest.approx(rate["a"] / rate["c"], abs=2e-3)
    assert float(table["GFLOP/step"]) > 0 and float(table["a GFLOP/s"]) > 0
    assert "peak" in report
    assert "a/b" in result.stdout


def test_benchmark_refuses_nonsense_arguments():
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--steps", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "must be positive" in result.stderr


def test_layout_study_measures_true_nchw_against_channels_last(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--layouts", "--depths", "8",
         "--families", "plain", "--steps", "2", "--warmup", "1", "--repeats", "1",
         "--num-train", "256", "--num-test", "128", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "channels_last.csv")
    assert sorted(rows["precision"].unique()) == ["32-true", "bf16-mixed"]
    for channels_last, layout in ((True, "channels-last"), (False, "NCHW")):
        assert (rows.loc[rows["channels_last"] == channels_last, "input_layout"] == layout).all()
    report = (tmp_path / "channels_last.md").read_text()
    lines = [line.split("|") for line in report.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0]]
    for cells in lines[2:]:
        row = dict(zip(header, [c.strip() for c in cells], strict=True))
        ratio = float(row["channels-last img/s"]) / float(row["NCHW img/s"])
        assert float(row["channels-last / NCHW"]) == pytest.approx(ratio, abs=2e-3)
        assert row["input seen (false / true)"] == "NCHW / channels-last"
