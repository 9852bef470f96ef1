"""Training curves from a run's per-epoch history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from deephash.viz.titles import fitted


def plot_training_curves(history: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Loss, active fraction, mean distances and validation scores against epoch (epochs
    without a figure, e.g. not validated, are left out of its line)."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), dpi=100)
    panels = [
        (axes[0, 0], [("loss", "loss")], "training loss"),
        (axes[0, 1], [("active_fraction", "active triplets")], "fraction of active triplets"),
        (axes[1, 0], [("mean_positive_distance", "anchor-positive"),
                      ("mean_negative_distance", "anchor-negative"),
                      ("embedding_norm", "embedding norm")], "mean distances"),
        (axes[1, 1], [("val_map", "validation mAP@all"), ("val_knn", "validation 10-NN acc")],
         "validation (val queries vs train)"),
    ]
    for ax, series, name in panels:
        for key, label in series:
            points = [(e, h[key]) for e, h in zip(epochs, history, strict=True)
                      if math.isfinite(h[key])]
            ax.plot([e for e, _ in points], [v for _, v in points], marker=".", label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(fitted(fig, title, 11), fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
