"""The report on a sweep: the claims ledger first, then one section per question.

Each question is a module of :mod:`degradation.analysis` holding its computation, its figure and
its section (``TITLE``, ``NEEDS``, ``section(ctx)``); this module walks :data:`QUESTIONS`, says
for each whether the sweep held what it needs and what it skipped, and adds the runs and the
definitions. Nothing in the report is written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from degradation.analysis import (
    budget,
    convergence,
    degradation,
    final_errors,
    gradients,
    init_probes,
    landscape,
    ledger,
    lesions,
    normalization,
    preactivation,
    responses,
    shortcut_variants,
    shortcuts,
)
from degradation.analysis.base import Context, Section, stderr_progress
from degradation.analysis.stats import MIN_SEEDS

# The questions, in report order (the ledger, computed last from their outputs, comes first).
QUESTIONS = [
    degradation,
    budget,
    final_errors,
    convergence,
    shortcuts,
    shortcut_variants,
    preactivation,
    normalization,
    responses,
    gradients,
    init_probes,
    lesions,
    landscape,
]


def runs_overview(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per run: status, steps, wall time, final errors."""
    view = pd.DataFrame(
        {
            "run": runs["run"],
            "status": runs["status"],
            "steps": runs["steps"].astype("Int64") if "steps" in runs else None,
            "wall time (s)": runs.get("wall_time_s"),
            "train error (%)": (100 * runs["final_train_error"].astype(float)).round(2),
            "test error (%)": (100 * runs["final_test_error"].astype(float)).round(2),
            "note": [_run_note(r) for _, r in runs.iterrows()],
        }
    )
    if "eval_time_s" in runs and runs["eval_time_s"].notna().any():  # recorded since issue 21
        # summaries are untrusted: a value that is not a number shows as blank
        seconds = {
            k: pd.to_numeric(runs[k], errors="coerce") for k in ("eval_time_s", "wall_time_s")
        }
        share = 100 * seconds["eval_time_s"] / seconds["wall_time_s"]
        view.insert(
            view.columns.get_loc("wall time (s)") + 1, "of which evaluating (%)", share.round(1)
        )
    return view


def _run_note(run: pd.Series) -> str:
    """Why a run is not in the verdict: divergence step, error message, or incompleteness."""
    status = run.get("status")
    if status == "diverged":
        return f"diverged at step {run.get('diverged_at_step')}: {run.get('error', '')}"
    if status in ("failed", "interrupted"):
        return str(run.get("error") or "")[:200]
    if status == "incomplete":
        return "no final summary (still running, or stopped; launch again to resume)"
    if status == "crashed":
        return (
            f"its process (pid {run.get('pid')}) died without a word (killed, out of memory, "
            "crash); launch again to resume from its last checkpoint"
        )
    if status == "running":
        return f"still training (pid {run.get('pid')})"
    return ""


def questions_table(sections: list[tuple[object, Section]]) -> pd.DataFrame:
    """Each question, what it needs, and whether this sweep answered it."""
    rows = []
    for module, section in sections:
        if not section.answered:
            why = [note for note in section.skipped if not note.startswith("needs ")]
            state = "not answered" + (": " + "; ".join(why) if why else "")
        elif section.skipped:
            state = f"answered; skipped {len(section.skipped)} part(s) (see Skipped)"
        else:
            state = "answered"
        rows.append({"question": section.title, "needs": module.NEEDS, "this sweep": state})
    return pd.DataFrame(rows)


def definitions() -> list[str]:
    """The report's definitions, with the thresholds every verdict uses."""
    return [
        "- Training error is measured on each training batch, in training mode, as training "
        "goes (the paper's dashed curves). The final training error is its mean over the last "
        "5% of the iterations; 'last 20%' is its mean over the last fifth.",
        "- Test error is measured on the whole test set after the last iteration.",
        f"- Verdict: a difference of at most {100 * degradation.MARGIN:.0f} point counts as no "
        f"change; a verdict needs {MIN_SEEDS} or more seeds per net and the 95% interval on one "
        "side of it (with fewer seeds: not decided).",
        f"- Vanishing gradients: a per-weight RMS layer gradient below {gradients.VANISH_RATIO:g} "
        "times the largest (claim 4 of the ledger).",
        *[f"- Ledger: {d}" for d in ledger.DEFINITIONS],
    ]


class AnalysisIncomplete(RuntimeError):
    """Some questions failed; the report was written without them (``written``, ``failures``)."""

    def __init__(self, written: dict[str, Path], failures: list[str]) -> None:
        super().__init__(f"{len(failures)} question(s) failed: " + "; ".join(failures))
        self.written, self.failures = written, failures


def _section(module, ctx: Context, failures: list[str]) -> Section:
    """A question's section; one that fails (a damaged file it reads, a bug) is reported in one
    line and in the report, and the others go on, so that the report is always written."""
    try:
        return module.section(ctx)
    except Exception as err:  # noqa: BLE001 - one question must not stop the report
        first = (str(err).strip().splitlines() or [""])[0][:200]
        note = f"failed ({type(err).__name__}: {first}); the other questions are unaffected"
        ctx.progress(f"error: {module.TITLE}: {note}")
        failures.append(f"{module.TITLE}: {type(err).__name__}: {first}")
        return Section(module.TITLE, answered=False, skipped=[note])


def write_analysis(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    out_dir: str | Path,
    command: str = "",
    probe_dirs: Sequence[str | Path] = (),
    progress: Callable[[str], None] = stderr_progress,
    formats: Sequence[str] = ("png", "pdf"),
) -> dict[str, Path]:
    """Write figures, tables and ``report.md`` (the claims ledger first) into ``out_dir``; probe
    outputs are looked for in ``probe_dirs`` and then ``out_dir``. Return what was written; if
    a question failed, the report is written without it and :class:`AnalysisIncomplete` raised."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(runs, metrics, out_dir, [Path(d) for d in probe_dirs], progress, tuple(formats))
    sections, failures = [], []
    for i, module in enumerate(QUESTIONS, start=1):
        progress(f"analysis {i}/{len(QUESTIONS)}: {module.TITLE}")
        sections.append((module, _section(module, ctx, failures)))
    progress("analysis: claims ledger")
    claims = _section(ledger, ctx, failures)
    status_counts = runs["status"].value_counts().to_dict()
    lines = ["# Degradation report", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    lines += [
        f"{len(runs)} runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(status_counts.items()))
        + ". Only finished runs enter the verdicts and the error columns; the others are "
        "counted in the table's 'not finished' column and explained under Runs.",
        "",
        *claims.markdown(),
        "## Questions",
        "",
        "What each section below answers, what it needs, and whether this sweep held it.",
        "",
        questions_table(sections).to_markdown(index=False),
        "",
    ]
    for _, section in sections:
        lines += section.markdown()
    overview = runs_overview(runs)
    wall = pd.to_numeric(overview["wall time (s)"], errors="coerce")
    lines += [
        "## Runs",
        "",
        overview.to_markdown(index=False),
        "",
        f"Total training wall time: {wall.sum():.0f} s over {int(wall.notna().sum())} runs.",
        "",
        "## Definitions",
        "",
        *definitions(),
        "",
    ]
    skipped = [(s.title, note) for s in [claims, *(s for _, s in sections)] for note in s.skipped]
    if skipped:
        lines += ["## Skipped", "", *[f"- {title}: {note}" for title, note in skipped], ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    ctx.written["report"] = report
    if failures:
        raise AnalysisIncomplete(ctx.written, failures)
    return ctx.written
