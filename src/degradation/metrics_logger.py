"""The Lightning logger that writes a run's ``metrics.csv``: one row per global step."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from degradation.metrics_file import read_metrics_file
from degradation.rundirs import METRICS_FILE, write_atomic

log = logging.getLogger("degradation.runs")
FIRST_COLUMNS = ["step", "train_error", "train_loss", "lr", "test_error", "test_loss"]


class MetricsLogger(Logger):
    """A Lightning logger that keeps one row per global step in ``<save_dir>/metrics.csv``.

    Metrics logged at the same step (training batch, evaluation) are merged into one row. The
    file is rewritten atomically every ``flush_every`` steps and at the end.
    """

    def __init__(self, save_dir: str | Path, flush_every: int = 500) -> None:
        super().__init__()
        self._save_dir = Path(save_dir)
        self.flush_every = flush_every
        self.rows: dict[int, dict[str, float]] = {}
        self._last_flush = 0

    @property
    def name(self) -> str:
        return "metrics"

    def resume(self, step: int, frame: pd.DataFrame | None = None) -> None:
        """Continue an earlier attempt's file from a checkpoint taken after ``step`` updates.

        Rows up to ``step`` (its row holds the evaluation that preceded the checkpoint) are
        kept, later ones dropped: they will be logged again, identically. Damaged rows are
        named in one line and dropped (the caller chose a checkpoint they do not reach past,
        :func:`degradation.checkpoints.resume_point`).
        """
        frame = self.read() if frame is None else frame
        self.rows = {}
        for record in frame[frame["step"] <= step].to_dict("records") if len(frame) else []:
            row_step = int(record.pop("step"))
            self.rows[row_step] = {k: v for k, v in record.items() if not pd.isna(v)}
        self._last_flush = max(self.rows, default=0)

    def read(self) -> pd.DataFrame:
        """The whole rows of the file an earlier attempt left (empty if none); each damaged row
        is named in a warning and dropped."""
        if not self.path.is_file():
            return pd.DataFrame()
        frame, problems = read_metrics_file(self.path)
        for problem in problems:
            log.warning("%s", problem)
        return frame if "step" in frame else pd.DataFrame()

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._save_dir)

    @property
    def path(self) -> Path:
        """Where the CSV file goes."""
        return self._save_dir / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: Hydra already saved the resolved configuration in the run directory."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = int(step if step is not None else max(self.rows, default=-1) + 1)
        row = self.rows.setdefault(step, {})
        for key, value in metrics.items():
            row[key] = float(value)

    def frame(self) -> pd.DataFrame:
        """The rows so far as a DataFrame sorted by step."""
        df = pd.DataFrame.from_dict(self.rows, orient="index").sort_index()
        df.index.name = "step"
        df = df.reset_index()
        ordered = [c for c in FIRST_COLUMNS if c in df.columns]
        return df[ordered + sorted(c for c in df.columns if c not in ordered)]

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this after every log call; write only every ``flush_every`` steps."""
        if self.rows and max(self.rows) - self._last_flush >= self.flush_every:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write all rows now."""
        if self.rows:
            write_atomic(self.path, self.frame().to_csv(index=False))
            self._last_flush = max(self.rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()
