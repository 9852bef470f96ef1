"""A picture of a query image beside its retrieved images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image


def _load(path: str) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError:
        return None  # e.g. a CIFAR-10 array reference, not a file


def plot_results(query: Image.Image, rows: list[dict[str, Any]], label: str | None,
                 path: Path) -> None:
    """Query first (titled with its labels ``label``), then results; a result's frame is
    green where it shares a label with the query (``row["relevant"]`` true), red where it
    shares none (false), absent where that is unknown (``None``, or no such key)."""
    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(1.6 * (len(rows) + 1), 2.2), dpi=100)
    axes = list(axes) if len(rows) else [axes]
    axes[0].imshow(query)
    axes[0].set_title(f"query\n{label or ''}", fontsize=8)
    for ax, row in zip(axes[1:], rows, strict=True):
        image = _load(row["path"])
        if image is not None:
            ax.imshow(image)
        ax.set_title(f"{row['rank']}: {row['label']}\nd={row['distance']:.3g}", fontsize=7)
        if row.get("relevant") is not None:
            colour = "limegreen" if row["relevant"] else "red"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
