"""README quotes the shipped results, not numbers typed in: its main job names a preset that
exists and analyses the folder that preset writes, and its ledger table says what the shipped
``results/why_quick/ledger.csv`` says (the same rows, verdicts and numbers)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
LEDGER = ROOT / "results" / "why_quick" / "ledger.csv"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _first_command() -> str:
    block = README.read_text().split("```bash", 1)[1].split("```", 1)[0]
    return next(line for line in block.splitlines() if "experiments/train.py" in line)


def _readme_ledger() -> list[list[str]]:
    """The rows of README's ledger table (the one after the why_quick link)."""
    text = README.read_text()
    start = text.index("From [`results/why_quick/`]")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows.append(cells)
    return rows


def _numbers(text: str) -> set[float]:
    return {abs(float(n)) for n in NUMBER.findall(text)}


def test_the_main_job_runs_a_preset_and_analyses_its_sweep():
    command = _first_command()
    preset = re.search(r"experiment=(\S+)", command).group(1)
    config = ROOT / "conf" / "experiment" / f"{preset}.yaml"
    assert config.is_file(), config
    sweep_dir = yaml.safe_load(config.read_text())["hydra"]["sweep"]["dir"]
    assert f"experiments/analyze.py {sweep_dir}" in command, (command, sweep_dir)


def test_the_main_job_has_seeds_enough_to_decide():
    """One seed decides no comparing row, so the main job must sweep several."""
    from degradation.analysis.stats import MIN_SEEDS

    preset = re.search(r"experiment=(\S+)", _first_command()).group(1)
    config = yaml.safe_load((ROOT / "conf" / "experiment" / f"{preset}.yaml").read_text())
    seeds = str(config["hydra"]["sweeper"]["params"]["seed"]).split(",")
    assert len(seeds) >= MIN_SEEDS, seeds


def test_the_readme_ledger_is_the_shipped_one():
    if not LEDGER.is_file():
        pytest.skip(f"{LEDGER.relative_to(ROOT)} is not there")
    shipped = pd.read_csv(LEDGER, dtype=str).fillna("")
    shipped = shipped[shipped["#"].astype(int) <= 11]  # the design rows have their own sweeps
    readme = _readme_ledger()
    assert [r[0] for r in readme] == list(shipped["#"]), "README's rows are not the ledger's"
    for cells, (_, row) in zip(readme, shipped.iterrows(), strict=True):
        measured, verdict = cells[-2], cells[-1]
        word = next(w for w in ("supported", "contradicted", "not decided") if w in row.verdict)
        assert verdict.startswith(word), (row["#"], verdict, row.verdict)
        quoted = _numbers(measured) - _numbers(row.claim) - {1.0, 5.0}  # depths, lags, "1-D"
        missing = quoted - _numbers(row.measured)
        assert not missing, (row["#"], sorted(missing), row.measured)
