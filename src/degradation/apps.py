"""What the Hydra entry points of experiments/ share: readers of list and count settings that
refuse bad values with a message naming the key, and a wrapper that turns a configuration Hydra
cannot compose into one line and exit code 2 (no torch here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from degradation.config import config_error_line


def listed(cfg: DictConfig, key: str, kind: type) -> list | None:
    """A list setting (``dirs=[A,B]``, or one value: ``depths=44``) as a list of ``kind``;
    None where it is null."""
    value = cfg[key]
    if value is None:
        return None
    values = list(value) if isinstance(value, ListConfig) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        raise ValueError(f"{key}={value}: must be a non-empty list of {kind.__name__} values")
    return values


def count(cfg: DictConfig, key: str, least: int = 1) -> int:
    """An integer setting of at least ``least``."""
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{key}={value!r}: must be an integer, at least {least}")
    return value


def dirs_of(cfg: DictConfig) -> list[Path]:
    """The sweep or run directories (``dirs``, required)."""
    if OmegaConf.is_missing(cfg, "dirs") or cfg.dirs is None:
        raise ValueError("dirs: give the sweep or run directories, e.g. dirs=[results/quick]")
    return [Path(d) for d in listed(cfg, "dirs", str)]


def run_app(main: Callable[[], None], name: str) -> None:
    """Run a Hydra app's ``main``; a configuration Hydra cannot compose (a key that does not
    exist, a malformed override) ends with one line and exit code 2, prefixed with ``name``.
    HYDRA_FULL_ERROR=1 shows the traceback instead."""
    user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors reach us as exceptions
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        if user_wants_traces:
            raise
        print(f"{name}: {config_error_line(err)}", file=sys.stderr)
        sys.exit(2)
