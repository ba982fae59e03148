"""Run names and hashes are a public interface: every shipped run directory under results/ is
found again by composing its own overrides with the current code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT
from degradation.config import register
from degradation.rundirs import config_hash, run_name

SHIPPED = sorted(
    p.parents[1]
    for p in (ROOT / "results").rglob(".hydra/overrides.yaml")
    # training runs (not probe outputs) named with a hash (the oldest shipped runs had none)
    if (p.parents[1] / "summary.json").is_file() and re.search(r"-[0-9a-f]{8}$", p.parents[1].name)
)


def composed_name(overrides: list[str]) -> str:
    register()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    data = cfg.hydra.runtime.choices.data
    budget = OmegaConf.select(cfg, "schedule.budget", default=None)
    return f"{run_name(cfg.model, data, cfg.seed, budget)}-{config_hash(cfg)}"


def test_there_are_shipped_runs_to_check():
    assert len(SHIPPED) >= 40 and len({p.parent for p in SHIPPED}) >= 9


@pytest.mark.parametrize("run_dir", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_run_keeps_its_name(run_dir: Path):
    overrides = [str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")]
    # Hydra's own keys (sweep dirs, launchers) never reach the name
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    assert composed_name(overrides) == run_dir.name
