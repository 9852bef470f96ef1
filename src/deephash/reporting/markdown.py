"""``report.md``: the summary table and each run's plots for a repository page (images by
relative path, so the page shows them where the run folders are committed or served).

Text that comes from the runs (folder and class names, titles, study tables) is escaped
(:func:`escape_markdown`): a renderer shows it as written, so no raw HTML (``<script>``),
link, image or table cell can be injected through a name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from deephash.reporting.runs import RunRecord
from deephash.reporting.studies import StudyTable, parse_markdown_table
from deephash.reporting.summary import escape_markdown, rows_markdown, summary_rows

__all__ = ["escape_markdown", "render_markdown", "summary_markdown"]


def summary_markdown(runs: list[RunRecord], names: dict[Path, str]) -> str:
    """The summary as a Markdown table (best values bold)."""
    return rows_markdown(summary_rows(runs, names))


def render_markdown(runs: list[RunRecord], names: dict[Path, str], title: str,
                    folder: Path, tables: list[StudyTable] | None = None) -> str:
    """The page, its image links relative to ``folder`` (where it is written)."""
    parts = [f"# {escape_markdown(title)}\n", summary_markdown(runs, names)]
    for table in tables or []:
        parts.append(f"\n## {escape_markdown(table.caption)}\n\n"
                     f"{_escaped_table(table.markdown).rstrip()}\n")
    for run in runs:
        parts.append(f"\n## {escape_markdown(f'{names[run.path]}: {run.title}')}\n")
        for path, caption in run.plots():
            link = quote(Path(os.path.relpath(path, folder)).as_posix())
            parts.append(f"![{escape_markdown(caption)}]({link})\n")
    return "\n".join(parts)


def _escaped_table(text: str) -> str:
    """A table a command wrote (``study.md``), its cells escaped: the file may have been
    edited by anyone who could write into the run folder."""
    header, rows = parse_markdown_table(text)
    if not header:
        return escape_markdown(re.sub(r"\s+", " ", text))
    lines = ["| " + " | ".join(escape_markdown(cell) for cell in line) + " |"
             for line in (header, *rows)]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]]) + "\n"
