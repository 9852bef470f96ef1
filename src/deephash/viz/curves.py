"""Precision-recall curve plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_pr_curve(recall: np.ndarray, precision: np.ndarray, path: Path, title: str) -> None:
    """Mean precision against mean recall over rank cut-offs, saved as PNG."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    ax.plot(recall, precision, marker=".", markersize=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
