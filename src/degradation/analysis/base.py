"""What every question of the analysis shares: the sweep it reads (:class:`Context`) and the
report section it returns (:class:`Section`).

A question is a module of this package with ``TITLE`` (the question, in words), ``NEEDS``
(what a sweep must hold to answer it) and ``section(ctx) -> Section``; the report walks them in
:data:`degradation.report.QUESTIONS` order.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


def read_table(path: str | Path) -> pd.DataFrame | None:
    """A probe's or a question's CSV table; None, with one line on stderr, when it is damaged
    (shared files are read as untrusted)."""
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        print(f"warning: {path} is unreadable ({reason}); not used", file=sys.stderr)
        return None
    if not len(frame.columns):
        print(f"warning: {path} has no columns; not used", file=sys.stderr)
        return None
    return frame


def read_cached_column(path: Path, column: str) -> pd.Series | None:
    """A run's cached numbers: ``column`` of the CSV at ``path`` when it is all numbers; None when
    there is no such file, or (named in one line on stderr) when it is damaged."""
    if not path.is_file():
        return None
    try:
        values = pd.read_csv(path)[column]
        if len(values) and pd.api.types.is_numeric_dtype(values) and values.notna().all():
            return values
        raise ValueError(f"no numbers in its {column} column")
    except (ValueError, KeyError, pd.errors.ParserError, UnicodeDecodeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        print(f"warning: {path} is unreadable ({reason}); computed again", file=sys.stderr)
        return None


def keep_cache(frame: pd.DataFrame, path: Path) -> None:
    """Write a run's cached numbers; a read-only run directory keeps nothing (said on stderr)."""
    try:
        frame.to_csv(path, index=False)
    except OSError as err:
        print(f"note: {path} not kept ({err.strerror})", file=sys.stderr)


def find_files(dirs: Iterable[str | Path], name: str) -> Iterator[Path]:
    """Each file ``name`` in these directories, in their order."""
    return (Path(d) / name for d in dirs if (Path(d) / name).is_file())


def stderr_progress(message: str) -> None:
    """Progress of a long step, on stderr (stdout keeps the results)."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Context:
    """A sweep's runs and metrics, where to write, and the probe outputs found beside it."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    out_dir: Path
    probe_dirs: list[Path] = field(default_factory=list)
    progress: Callable[[str], None] = stderr_progress
    formats: tuple[str, ...] = ("png", "pdf")
    written: dict[str, Path] = field(default_factory=dict)

    @property
    def finished(self) -> pd.DataFrame:
        """The finished runs."""
        return self.runs[self.runs["status"] == "finished"]

    def save_figure(self, fig: Figure, name: str) -> str:
        """Write ``fig`` as ``name.<format>`` for every format; return the Markdown image link
        (the first format)."""
        for fmt in self.formats:
            fig.savefig(self.out_dir / f"{name}.{fmt}", dpi=130)
        path = self.out_dir / f"{name}.{self.formats[0]}"
        self.written[name] = path
        return f"![{name}]({path.name})"

    def save_table(self, frame: pd.DataFrame, name: str) -> Path:
        """Write ``frame`` as ``name.csv``."""
        path = self.out_dir / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.written[name] = path
        return path

    def copy_beside(self, figure: Path) -> str:
        """Copy a probe's figure (each format) next to the report; return its Markdown link."""
        for fmt in self.formats:
            source = figure.with_suffix(f".{fmt}")
            target = self.out_dir / source.name
            if source.is_file() and source.resolve() != target.resolve():
                shutil.copy(source, target)
        return f"![{figure.stem}]({figure.name})"

    @property
    def search_dirs(self) -> list[Path]:
        """Where probe outputs are looked for: the probe directories, then the output one."""
        return [*self.probe_dirs, self.out_dir]

    def probe_file(self, name: str) -> Path | None:
        """The first ``name`` in :attr:`search_dirs`."""
        return next(find_files(self.search_dirs, name), None)


@dataclass
class Section:
    """One question's part of the report."""

    title: str
    lines: list[str] = field(default_factory=list)
    # what the question could not do, and why (shown in the report's question list)
    skipped: list[str] = field(default_factory=list)
    # False when the sweep holds nothing the question needs (the section is then left out)
    answered: bool = True

    def markdown(self) -> list[str]:
        """The section's report lines, under its heading."""
        return [f"## {self.title}", "", *self.lines, ""] if self.answered else []


def probe_section(
    ctx: Context, title: str, needs: str, tables: list[str], figure: str, body
) -> tuple[Section, list[pd.DataFrame]]:
    """A section built from a probe's output tables (found with :meth:`Context.probe_file`, all
    in one directory): ``body(*frames)`` gives its Markdown (a leading ``## `` heading is
    dropped), followed by the probe's figure. Unanswered when the first table is missing."""
    first = ctx.probe_file(tables[0])
    if first is None:
        return Section(title, answered=False, skipped=[f"needs {needs}"]), []
    missing = [t for t in tables if not (first.parent / t).is_file()]
    if missing:
        return Section(title, answered=False, skipped=[f"{first.parent}: no {missing[0]}"]), []
    frames = [read_table(first.parent / t) for t in tables]
    if any(frame is None for frame in frames):
        damaged = tables[[frame is None for frame in frames].index(True)]
        return Section(title, answered=False, skipped=[f"{first.parent}: {damaged} damaged"]), []
    try:
        text = body(*frames).strip().splitlines()
    except (KeyError, ValueError, TypeError) as err:  # a table without the expected columns
        why = f"{first.parent}: {tables[0]} lacks what it should hold ({type(err).__name__}: {err})"
        print(f"warning: {why}", file=sys.stderr)
        return Section(title, answered=False, skipped=[why]), []
    if text and text[0].startswith("## "):
        text = text[1:]
    lines = [*text, "", f"From `{first.parent}`.", ""]
    if (first.parent / figure).is_file():
        lines.append(ctx.copy_beside(first.parent / figure))
    return Section(title, lines), frames


def table_section(
    ctx: Context, title: str, needs: str, table: pd.DataFrame, name: str, intro: str
) -> Section:
    """A section of one table under ``intro`` (also ``name.csv``); unanswered, saying what it
    needs, when the table is empty."""
    if table.empty:
        return Section(title, answered=False, skipped=[f"needs {needs}"])
    ctx.save_table(table, name)
    return Section(title, [intro, "", table.to_markdown(index=False)])


def write_probe(
    out: Path,
    name: str,
    tables: dict[str, pd.DataFrame],
    fig: Figure,
    text: str,
    formats: tuple[str, ...] = ("png", "pdf"),
    label: str = "",
) -> None:
    """A probe's outputs in ``out``: each table as ``<key>.csv``, the figure as
    ``<name>.<format>``, and ``<name>.md`` (``text`` and the figure's link, ``label`` its alt
    text; default the name in words)."""
    out.mkdir(parents=True, exist_ok=True)
    for stem, frame in tables.items():
        frame.to_csv(out / f"{stem}.csv", index=False)
    for fmt in formats:
        fig.savefig(out / f"{name}.{fmt}", dpi=130)
    label = label or name.replace("_", " ")
    (out / f"{name}.md").write_text(f"{text}\n![{label}]({name}.{formats[0]})\n")
