"""Every shipped analysis is what the current code writes: each folder of results/ with a
ledger is analysed again (the analyze command its COMMAND.md records last, into a temporary
folder) and its ledger.csv and table.csv must equal the shipped files, so that a rule changed
without re-made results fails here."""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from degradation.report import AnalysisIncomplete, write_analysis
from degradation.results import collect

RESULTS = ROOT / "results"
SHIPPED = sorted(p.parent for p in RESULTS.glob("*/ledger.csv"))
COMPARED = ("ledger.csv", "table.csv")


def analyze_arguments(folder: Path) -> tuple[list[Path], Path, list[Path], str]:
    """The sweep directories, output folder and probe directories of the last analyze command
    in ``folder``'s COMMAND.md (paths from the repository root), and the command itself."""
    text = (folder / "COMMAND.md").read_text()
    commands = re.findall(r"experiments/analyze\.py ([^`&\n]+)", text)
    assert commands, f"{folder}/COMMAND.md records no analyze command"
    words = shlex.split(commands[-1])
    sweeps, probes, out, target = [], [], None, "sweeps"
    for word in words:
        if word == "--out":
            target = "out"
        elif word == "--probes":
            target = "probes"
        elif target == "out":
            out, target = ROOT / word, "sweeps"
        elif target == "probes":
            probes.append(ROOT / word)
        else:
            sweeps.append(ROOT / word)
    return sweeps, out or sweeps[0], probes, commands[-1]


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_shipped_ledger_and_table_are_what_the_code_writes(folder, tmp_path):
    sweeps, out, probes, command = analyze_arguments(folder)
    assert out.resolve() == folder.resolve(), f"{folder}: its analyze command writes to {out}"
    for item in folder.iterdir():  # the folder's own files (caches, probe copies), not its runs
        if item.is_file() and item.name not in COMPARED:
            shutil.copy(item, tmp_path / item.name)
    runs, metrics = collect(*sweeps)
    # a failed question is in the report, not here: the files compared below say what was made
    with contextlib.suppress(AnalysisIncomplete):
        write_analysis(runs, metrics, tmp_path, probe_dirs=probes, progress=lambda _: None,
                       formats=("png",))  # fmt: skip
    remake = f".venv/bin/python experiments/analyze.py {command}"
    for name in COMPARED:
        shipped = folder / name
        if shipped.is_file():
            made = (tmp_path / name).read_text()
            assert made == shipped.read_text(), (
                f"{shipped.relative_to(ROOT)} is not what the current code writes: re-make it "
                f"with `{remake}`"
            )


def test_no_shipped_run_holds_a_lock_or_a_checkpoint():
    """What git ships under results/ is the runs' records: never a run's lock file, nor
    checkpoints or other pickled weights beyond the weights-only weights.pt."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = listed.stdout.splitlines()
    assert files, "git lists no shipped results"
    bad = [f for f in files if f.endswith((".lock", ".ckpt")) or "/checkpoints/" in f]
    assert not bad, bad[:5]
