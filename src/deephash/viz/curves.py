"""Precision-recall curve plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from deephash.viz.titles import fitted

#: points of the title (matplotlib's default is 14.4; a run's title is long)
TITLE_SIZE = 10


def pr_figure(recall: np.ndarray, precision: np.ndarray, title: str) -> Figure:
    """Mean precision ``(C,)`` against mean recall ``(C,)`` over rank cut-offs (or Hamming
    radii), titled ``title`` in lines that fit the figure."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    ax.plot(recall, precision, marker=".", markersize=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(fitted(fig, title, TITLE_SIZE), fontsize=TITLE_SIZE)
    fig.tight_layout()
    return fig


def plot_pr_curve(recall: np.ndarray, precision: np.ndarray, path: Path, title: str) -> None:
    """:func:`pr_figure`, saved as PNG."""
    fig = pr_figure(recall, precision, title)
    fig.savefig(path)
    plt.close(fig)
