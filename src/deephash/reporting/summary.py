"""The summary table of a report: one row per run, the figures people compare.

A row is a plain mapping (``run``, ``method``, ``protocol`` and one value per column,
``None`` when the run lacks it), so the same rows render into ``report.html``,
``report.md``, ``summary.json`` and the README's generated tables
(:mod:`deephash.reporting.readme`).

The training column shows CPU time (``train_cpu_seconds``: other jobs on the machine barely
move it, :mod:`deephash.training.clock`). Rows written before deephash kept it have the
wall-clock ``train_seconds`` alone, and show that: the header says ``(wall-clock)`` when
every time is, and a wall-clock cell among CPU times says ``(wall)``. A time taken while
the machine's load exceeded its cores (the row's ``load``) carries ``†``, explained under
the table; a row without ``load`` (an older one) carries nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deephash.machine import LOADED, load_footnote, under_load
from deephash.reporting.runs import RunRecord

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """A summary column: its header, the metric key (or ``train_seconds``), and whether
    larger is better (bold marks the best)."""

    header: str
    key: str
    higher_is_better: bool = True


COLUMNS = (
    Column("val mAP@all", "val_map@all"), Column("test mAP@all", "map@all"),
    Column("mAP@1000", "map@1000"), Column("kNN@1", "knn_acc@1"), Column("P@100", "p@100"),
    Column("prec@r2", "prec@r2"), Column("training", "train_seconds", higher_is_better=False),
)


def value(run: RunRecord, column: Column) -> float:
    return run.train_seconds if column.key == "train_seconds" else run.figure(column.key)


def summary_rows(runs: list[RunRecord], names: dict[Path, str]) -> list[Row]:
    """One row per run: its short name, method, protocol and every column's value."""
    rows = []
    for run in runs:
        values = {c.key: value(run, c) for c in COLUMNS}
        values["train_cpu_seconds"] = run.train_cpu_seconds
        rows.append({"run": names[run.path], "method": run.title, "protocol": run.protocol,
                     **{k: None if math.isnan(v) else v for k, v in values.items()},
                     "load": run.load})
    return rows


def shown(row: Row, column: Column) -> tuple[float | None, bool]:
    """The number a cell shows, and whether it is a wall-clock time (the training
    column's fallback for a row without CPU time)."""
    if column.key != "train_seconds":
        return row.get(column.key), False
    if row.get("train_cpu_seconds") is not None:
        return row["train_cpu_seconds"], False
    return row.get("train_seconds"), row.get("train_seconds") is not None


def _clocks(rows: list[Row], column: Column) -> set[bool]:
    """Whether the shown times are wall-clock (``True``) or CPU time, over the rows."""
    return {wall for row in rows for number, wall in [shown(row, column)] if number is not None}


def header(rows: list[Row], column: Column) -> str:
    """A column's header; the training column's names its clock."""
    if column.key != "train_seconds":
        return column.header
    clocks = _clocks(rows, column)
    return (column.header if not clocks else f"{column.header} (wall-clock)"
            if clocks == {True} else f"{column.header} (CPU)")


def cell(rows: list[Row], index: int, column: Column) -> str:
    """The text of row ``index``'s cell: :func:`formatted`, a wall-clock time among CPU
    times marked ``(wall)``, a time taken under load marked ``†``."""
    row = rows[index]
    number, wall = shown(row, column)
    text = formatted(number, column)
    if column.key == "train_seconds" and number is not None:
        if wall and len(_clocks(rows, column)) > 1:
            text += " (wall)"
        if under_load(row.get("load")):
            text += f" {LOADED}"
    return text


def footnote(rows: list[Row]) -> str:
    """The note under the table that explains ``†`` (``""`` when no row carries it)."""
    return load_footnote(row.get("load") for row in rows if row.get("train_seconds")
                         is not None or row.get("train_cpu_seconds") is not None)


def formatted(number: float | None, column: Column) -> str:
    """``0.8525``; ``12 min`` / ``48 s`` for times; ``—`` when missing."""
    if number is None or math.isnan(number):
        return "—"
    if column.key == "train_seconds":
        return f"{number / 60:.0f} min" if number >= 600 else f"{number:.0f} s"
    return f"{number:.4f}"


def best_rows(rows: list[Row], column: Column) -> set[int]:
    """Indices of the rows with the best value of ``column`` among the rows of their
    protocol (figures of different protocols do not compare, nor times on different
    clocks; ties all marked)."""
    marked: set[int] = set()
    for protocol, wall in {(row["protocol"], shown(row, column)[1]) for row in rows}:
        values = {i: shown(row, column)[0] for i, row in enumerate(rows)
                  if row["protocol"] == protocol and shown(row, column)[1] == wall}
        finite = [v for v in values.values() if v is not None and not math.isnan(v)]
        if finite:
            best = max(finite) if column.higher_is_better else min(finite)
            marked |= {i for i, v in values.items() if v == best}
    return marked


#: characters that Markdown or HTML would read as markup, and what shows them as written
_MARKUP = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "|": "\\|", "`": "\\`",
           "*": "\\*", "[": "\\[", "]": "\\]"}


def escape_markdown(text: object) -> str:
    """``text`` on one line, shown as written by a Markdown renderer: HTML tags become
    entities (no ``<script>`` gets through), and table pipes, emphasis, links and code
    spans are backslash-escaped; a leading ``#``, ``-`` or ``+`` cannot start a block.
    Plain names, numbers and titles pass unchanged."""
    one_line = " ".join(str(text).split())
    escaped = "".join(_MARKUP.get(char, char) for char in one_line)
    return "\\" + escaped if escaped[:1] in ("#", "-", "+") else escaped


def rows_markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table, the best value of each column bold, and the footnote
    on times taken under load."""
    best = {column.key: best_rows(rows, column) for column in COLUMNS}
    lines = ["| run | method | protocol | " + " | ".join(header(rows, c) for c in COLUMNS)
             + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    for i, row in enumerate(rows):
        cells = [f"**{cell(rows, i, c)}**" if i in best[c.key] else cell(rows, i, c)
                 for c in COLUMNS]
        lines.append(f"| {escape_markdown(row['run'])} | {escape_markdown(row['method'])} | "
                     f"{escape_markdown(row['protocol'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + footnote(rows)


def best_of_kind(runs: list[RunRecord], kind: str) -> RunRecord | None:
    """The run of ``kind`` with the best validation mAP@all (chosen on validation, never on
    test); the first such run when none has a validation figure."""
    of_kind = [run for run in runs if run.kind == kind]
    if not of_kind:
        return None
    scored = [run for run in of_kind if not math.isnan(run.figure("val_map@all"))]
    return max(scored, key=lambda run: run.figure("val_map@all")) if scored else of_kind[0]
