"""Shared helpers for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_train(*overrides: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run experiments/train.py as a real subprocess with Hydra overrides."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "train.py"), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until ``condition()`` holds (a file appeared, a step was reached); fail if the
    process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process ended first: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


# Tiny but real training settings for subprocess tests on synthetic data.
TINY = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=256",
    "data.image_size=16",
    "model.depth=8",
    "model.width=8",
    "data.batch_size=64",
    "callbacks.progress.refresh_rate=0",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
