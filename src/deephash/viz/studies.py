"""Plots of the studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from deephash.viz.titles import fitted


def plot_miner_study(curves: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]],
                     path: Path, title: str, cpu: bool = True) -> None:
    """Left: validation mAP@all against training time per miner. Right: final test
    scores against total training time (``rows``' ``train_seconds``). CPU time with
    ``cpu`` (the histories' ``elapsed_cpu_seconds``), else wall-clock."""
    clock = "CPU time" if cpu else "wall-clock time"
    elapsed = "elapsed_cpu_seconds" if cpu else "elapsed_seconds"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colours = {}
    for miner, history in curves.items():
        (line,) = left.plot([h[elapsed] for h in history],
                            [h["val_map"] for h in history], marker=".", label=miner)
        colours[miner] = line.get_color()
    left.set_xlabel(f"training {clock} (s, incl. validation)")
    left.set_ylabel("validation mAP@all")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for row in rows:
        colour = colours.get(row["miner"])
        right.scatter(row["train_seconds"], row["map@all"], marker="o", color=colour)
        right.scatter(row["train_seconds"], row["knn_acc@10"], marker="^", color=colour)
        right.annotate(row["miner"], (row["train_seconds"], row["map@all"]), fontsize=7,
                       xytext=(3, 3), textcoords="offset points")
    right.set_xlabel(f"total training {clock} (s)")
    right.set_ylabel("test score (o mAP@all, ^ 10-NN accuracy)")
    right.grid(alpha=0.3)
    fig.suptitle(fitted(fig, f"miner study: {title}", 11), fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_schedule_study(curves: dict[str, list[dict[str, Any]]], path: Path,
                        title: str) -> None:
    """Left: validation mAP@all of the sign codes per epoch. Right: the margin per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for variant, history in curves.items():
        epochs = [h["epoch"] + 1 for h in history]
        left.plot(epochs, [h["val_map"] for h in history], marker=".", label=variant)
        right.plot(epochs, [h["margin"] for h in history], marker=".", label=variant)
    for ax, name in ((left, "validation mAP@all (sign codes)"), (right, "margin α")):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(fitted(fig, title, 11), fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
