"""A report's study-level figures and tables: what a study draws across its runs (the miner
study's validation mAP against time, the schedule study's curves: their ``study.png``), mAP
against code length for every ``hash`` sweep of several lengths (from its ``bits.json``),
and the tables the commands write (a study's ``study.md``, a margin grid's ``margins.md``,
a sweep's ``bits.md``)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class StudyFigure:
    """A PNG of a study folder, with a caption."""

    folder: Path
    caption: str
    png: bytes


@dataclass(frozen=True)
class StudyTable:
    """A Markdown table a command wrote into a study folder, with a caption."""

    folder: Path
    caption: str
    markdown: str


#: the tables a study folder may hold: file name -> what it tabulates
TABLES = {"study.md": "the study's table", "margins.md": "margin grid (selection on validation)",
          "bits.md": "code lengths (test protocol)",
          "methods.md": "hashing methods (mean over seeds ± half the spread)"}


def where(folder: Path, root: Path) -> str:
    """A study folder's name in captions: its path under ``root`` (``dtsh-1/csq/seed-0``:
    a method study holds many ``seed-0`` folders), ``root``'s own name for ``root``."""
    try:
        return folder.relative_to(root).as_posix().strip(".") or root.name
    except ValueError:
        return folder.name


def bits_figure(rows: list[dict[str, float]], title: str) -> bytes:
    """Test mAP@all (and precision within Hamming radius 2) against code length, as PNG."""
    bits = [int(r["bits"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
    for key, label in (("map@all", "test mAP@all"), ("prec@r2", "precision, radius 2")):
        if all(key in r for r in rows):
            ax.plot(bits, [r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel("bits")
    ax.set_xticks(bits)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def study_figures(roots: list[Path]) -> list[StudyFigure]:
    """Every study figure at or under ``roots``, in path order."""
    figures: list[StudyFigure] = []
    for root in roots:
        for path in sorted(root.rglob("study.png")) if root.is_dir() else []:
            figures.append(StudyFigure(path.parent, f"{where(path.parent, root)}: study figure",
                                       path.read_bytes()))
        for path in sorted(root.rglob("bits.json")) if root.is_dir() else []:
            try:
                rows = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rows, list) and len(rows) > 1:
                title = f"{where(path.parent, root)}: mAP against code length"
                figures.append(StudyFigure(path.parent, title, bits_figure(rows, title)))
    return figures


def study_tables(roots: list[Path]) -> list[StudyTable]:
    """Every study table at or under ``roots``, in path order."""
    tables: list[StudyTable] = []
    for root in roots:
        found = sorted(p for name in TABLES for p in root.rglob(name)) if root.is_dir() else []
        for path in found:
            try:
                text = path.read_text()
            except OSError:
                continue
            tables.append(StudyTable(path.parent,
                                     f"{where(path.parent, root)}: {TABLES[path.name]}", text))
    return tables


def markdown_cells(line: str) -> list[str]:
    """``| a | b |`` -> ``["a", "b"]``."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A pipe table's header and rows (the ``|---|`` rule skipped)."""
    lines = [line for line in text.splitlines() if line.strip().startswith("|")]
    if not lines:
        return [], []
    body = [markdown_cells(line) for line in lines[1:]
            if not set(line.replace("|", "").strip()) <= {"-", ":", " "}]
    return markdown_cells(lines[0]), body
