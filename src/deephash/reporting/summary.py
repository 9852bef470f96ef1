"""The summary table of a report: one row per run, the figures people compare."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deephash.reporting.runs import RunRecord


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


def formatted(number: float, column: Column) -> str:
    """``0.8525``; ``12 min`` / ``48 s`` for times; ``—`` when missing."""
    if math.isnan(number):
        return "—"
    if column.key == "train_seconds":
        return f"{number / 60:.0f} min" if number >= 600 else f"{number:.0f} s"
    return f"{number:.4f}"


def best_rows(runs: list[RunRecord], column: Column) -> set[int]:
    """Indices of the runs with the best value of ``column`` among the runs of their
    protocol (figures of different protocols do not compare; ties all marked)."""
    marked: set[int] = set()
    for protocol in {run.protocol for run in runs}:
        values = {i: value(run, column) for i, run in enumerate(runs) if run.protocol == protocol}
        finite = [v for v in values.values() if not math.isnan(v)]
        if finite:
            best = max(finite) if column.higher_is_better else min(finite)
            marked |= {i for i, v in values.items() if v == best}
    return marked


def best_of_kind(runs: list[RunRecord], kind: str) -> RunRecord | None:
    """The run of ``kind`` with the best validation mAP@all (chosen on validation, never on
    test); the first such run when none has a validation figure."""
    of_kind = [run for run in runs if run.kind == kind]
    if not of_kind:
        return None
    scored = [run for run in of_kind if not math.isnan(run.figure("val_map@all"))]
    return max(scored, key=lambda run: run.figure("val_map@all")) if scored else of_kind[0]
