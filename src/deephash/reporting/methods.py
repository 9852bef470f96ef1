"""The README's methods table: a method study's results beside the published figures.

``benchmarks/bench_methods.py`` runs ``deephash study --preset methods`` (one
``method-study`` stage per protocol) and stores, for each protocol, the Markdown of
:func:`methods_readme_table` under ``tables`` in ``benchmarks/results/methods.json``,
where the README's generated blocks read it (:mod:`deephash.reporting.readme`).

The published figures (:data:`PUBLISHED`) are the papers' own, on **another backbone and
protocol** than ours: finetuned AlexNet/VGG-F/CNN-F (or a small CNN trained from scratch)
where ours is frozen ImageNet features; and, as issue 22 notes, most papers report the best
test epoch with Hamming ties broken by index order, where our figures pick the epoch on
validation and count ties as ties. They say where a method is expected to land, not what
our protocol would give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deephash.studies.tables import markdown_table, mean_cell

#: the bits the published column quotes unless a figure says otherwise
PUBLISHED_BITS = 48


@dataclass(frozen=True)
class Published:
    """A method's published mAP@all at :data:`PUBLISHED_BITS` (``bits`` where the source
    reports another length), its source and the network it was trained with."""

    figure: float
    source: str
    network: str
    bits: int = PUBLISHED_BITS

    def cell(self) -> str:
        length = f", {self.bits} bits" if self.bits != PUBLISHED_BITS else ""
        return f"{self.figure:.3f} ({self.source}; {self.network}{length})"


#: protocol -> method -> figure. ``cifar10`` is DTSH's setting 2 (10,000 queries, the
#: 50,000 training images as database), ``dtsh-1`` its setting 1 (1,000 queries, 5,000
#: training images, 59,000 database) = DeepHash-pytorch's ``cifar10-1`` (docs/protocols.md)
PUBLISHED: dict[str, dict[str, Published]] = {
    "cifar10": {
        "dtsh": Published(0.926, "DTSH paper, setting 2", "VGG-F finetuned"),
        "greedyhash": Published(0.944, "GreedyHash paper via DeepHash-pytorch", "AlexNet "
                                "finetuned"),
    },
    "dtsh-1": {
        "dtsh": Published(0.774, "DTSH paper, setting 1", "VGG-F finetuned"),
        "dpsh": Published(0.757, "DPSH in the DTSH paper, setting 1", "CNN-F finetuned"),
        "dsh": Published(0.676, "DSH paper via DeepHash-pytorch", "a CNN from scratch"),
        "greedyhash": Published(0.822, "GreedyHash paper via DeepHash-pytorch", "AlexNet "
                                "finetuned"),
        "orthohash": Published(0.824, "OrthoHash README, best test epoch", "VGG16 "
                               "finetuned", bits=64),
    },
}


def methods_readme_table(record: Mapping[str, Any]) -> str:
    """One row per method of a ``method-study``'s ``methods.json`` (``record``): the chosen
    hyper-parameter, tie-aware test mAP@all at each code length (mean over the seeds ±
    half the spread), the index-order mAP@all and the training CPU seconds at 48 bits (the
    longest length below it where the study has no 48), and the published figure."""
    seeds = len(record["seeds"])
    lengths = list(record["bits"])
    at = PUBLISHED_BITS if PUBLISHED_BITS in lengths else max(
        [b for b in lengths if b <= PUBLISHED_BITS] or lengths)
    published = PUBLISHED.get(str(record["protocol"]), {})
    by_method: dict[str, dict[int, Mapping[str, Any]]] = {}
    for row in record["rows"]:
        by_method.setdefault(row["method"], {})[int(row["bits"])] = row
    lines = []
    for method, rows in by_method.items():
        if len(rows) == 1 and next(iter(rows)) not in lengths:  # the yardstick's own length
            (bits, reference), = rows.items()
            name = f"{method} ({bits} bits: the yardstick at every length)"
            cells = [mean_cell(reference, "map@all", seeds, 3)] * len(lengths)
        else:
            name = method
            cells = [mean_cell(rows[b], "map@all", seeds, 3) if b in rows else "—" for b in lengths]
            reference = rows.get(at, {})
        seconds = reference.get("train_cpu_s")
        lines.append([name, next(iter(rows.values())).get("selected", "—"), *cells,
                      mean_cell(reference, "map@all_index_order", seeds, 3),
                      "—" if seconds is None else f"{seconds:.0f}",
                      published[method].cell() if method in published else "—"])
    header = ["method", "selected", *(f"{b} bits" for b in lengths),
              f"{at} bits, ties by index", f"train CPU s ({at} bits)",
              f"published, {PUBLISHED_BITS} bits (another network and protocol)"]
    return markdown_table(header, lines)
