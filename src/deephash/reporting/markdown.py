"""``report.md``: the summary table and each run's plots for a repository page (images by
relative path, so the page shows them where the run folders are committed or served)."""

from __future__ import annotations

import os
from pathlib import Path

from deephash.reporting.runs import RunRecord
from deephash.reporting.studies import StudyTable
from deephash.reporting.summary import rows_markdown, summary_rows


def summary_markdown(runs: list[RunRecord], names: dict[Path, str]) -> str:
    """The summary as a Markdown table (best values bold)."""
    return rows_markdown(summary_rows(runs, names))


def render_markdown(runs: list[RunRecord], names: dict[Path, str], title: str,
                    folder: Path, tables: list[StudyTable] | None = None) -> str:
    """The page, its image links relative to ``folder`` (where it is written)."""
    parts = [f"# {title}\n", summary_markdown(runs, names)]
    for table in tables or []:
        parts.append(f"\n## {table.caption}\n\n{table.markdown.rstrip()}\n")
    for run in runs:
        parts.append(f"\n## {names[run.path]}: {run.title}\n")
        for path, caption in run.plots():
            parts.append(f"![{caption}]({Path(os.path.relpath(path, folder)).as_posix()})\n")
    return "\n".join(parts)
