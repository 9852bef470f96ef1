"""Markdown tables for study reports, and how their time cells say what they measured.

A study's time columns read CPU time (:mod:`deephash.training.clock`); a figure that only
exists as wall-clock (a sub-run resumed from a history older than CPU times) says so in its
cell. A time taken while the machine's 1-minute load average exceeded its usable cores
(:func:`deephash.machine.load_summary`) carries :data:`LOADED`, explained by
:func:`load_footnote` under the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from deephash.machine import LOADED, load_footnote, under_load

__all__ = ["LOADED", "load_footnote", "markdown_table", "mean_cell", "metric_cell", "time_cell",
           "under_load"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metric_cell(row: Mapping[str, Any], key: str, digits: int = 4) -> str:
    """``row[key]`` to ``digits`` decimals; ``—`` when the run has no such figure (kNN
    accuracy on multi-label data, verification scores of old runs) or it is NaN."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def mean_cell(row: Mapping[str, Any], key: str, seeds: int, digits: int = 4) -> str:
    """A figure averaged over ``seeds`` seeds: :func:`metric_cell` of ``row[key]`` and, with
    several seeds, ``± half the spread`` (``row[key + "_spread"]``: max - min)."""
    text = metric_cell(row, key, digits)
    spread = row.get(f"{key}_spread")
    if seeds > 1 and spread is not None and text != "—":
        text += f" ± {spread / 2:.{digits}f}"
    return text


def time_cell(seconds: float, digits: int = 0, wall: bool = False,
              load: dict[str, Any] | None = None) -> str:
    """``12.34``; ``12.34 (wall)`` for a wall-clock figure in a CPU-time column; with
    :data:`LOADED` when taken under load; ``—`` when unknown."""
    if not math.isfinite(seconds):
        return "—"
    return (f"{seconds:.{digits}f}" + (" (wall)" if wall else "")
            + (f" {LOADED}" if under_load(load) else ""))
