"""``report.md``: the summary table and each run's plots for a repository page (images by
relative path, so the page shows them where the run folders are committed or served)."""

from __future__ import annotations

import os
from pathlib import Path

from deephash.reporting.runs import RunRecord
from deephash.reporting.summary import COLUMNS, best_rows, formatted, value


def summary_markdown(runs: list[RunRecord], names: dict[Path, str]) -> str:
    """The summary as a Markdown table (best values bold)."""
    best = {column.key: best_rows(runs, column) for column in COLUMNS}
    lines = ["| run | method | protocol | " + " | ".join(c.header for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for i, run in enumerate(runs):
        cells = [f"**{formatted(value(run, c), c)}**" if i in best[c.key]
                 else formatted(value(run, c), c) for c in COLUMNS]
        lines.append(f"| {names[run.path]} | {run.title} | {run.protocol} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(runs: list[RunRecord], names: dict[Path, str], title: str,
                    folder: Path) -> str:
    """The page, its image links relative to ``folder`` (where it is written)."""
    parts = [f"# {title}\n", summary_markdown(runs, names)]
    for run in runs:
        parts.append(f"\n## {names[run.path]}: {run.title}\n")
        for path, caption in run.plots():
            parts.append(f"![{caption}]({Path(os.path.relpath(path, folder)).as_posix()})\n")
    return "\n".join(parts)
