"""t-SNE maps of embeddings, coloured by class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from deephash.labels import LabelsLike, as_label_set
from deephash.viz.titles import fitted


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``n`` items with every class equally represented.

    Quotas are filled round-robin, one item per class per round (classes in a seeded
    random order), so class counts differ by at most one unless a class runs out.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: 0 for c in classes}
    target = min(n, len(labels))
    while sum(quota.values()) < target:
        for c in rng.permutation(classes):
            if quota[c] < len(members[c]) and sum(quota.values()) < target:
                quota[c] += 1
    return np.sort(np.concatenate([members[c][: quota[c]] for c in classes]))


def tsne_2d(x: np.ndarray, seed: int, pca_dims: int = 50) -> np.ndarray:
    """``(n, D)`` -> ``(n, 2)``: PCA to ``pca_dims`` (when D is larger), then t-SNE."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] > pca_dims and x.shape[0] > pca_dims:
        x = PCA(n_components=pca_dims, random_state=seed).fit_transform(x)
    perplexity = min(30.0, max(2.0, (x.shape[0] - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(x)


def plot_tsne(points: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
              title: str) -> None:
    """Scatter ``(n, 2)`` points coloured by label, with a legend, saved as PNG."""
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for c, name in enumerate(class_names):
        mask = labels == c
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=4, color=cmap(c % cmap.N),
                       label=name, alpha=0.8, linewidths=0)
    ax.set_title(fitted(fig, title, 11), fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
              frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def colour_ids(labels: LabelsLike) -> np.ndarray:
    """``(N,)`` int64 class id that colours each point: its label, or for an image with
    several labels the first of them (lowest class id); -1 (not drawn) for no label."""
    label_set = as_label_set(labels)
    if label_set.is_single:
        return np.asarray(label_set.ids)
    hot = label_set.multi_hot
    return np.where(hot.any(axis=1), hot.argmax(axis=1), -1).astype(np.int64)


def tsne_plot(x: np.ndarray, labels: LabelsLike, class_names: list[str], path: Path, *,
              n_points: int = 2000, seed: int = 0, title: str = "t-SNE") -> np.ndarray:
    """t-SNE of a stratified sample of ``n_points`` rows of ``x`` (``(N, D)``) with label
    sets ``labels``; returns the sample. Points of multi-label images are coloured by their
    first label (the title says so)."""
    label_set = as_label_set(labels)
    ids = colour_ids(label_set)
    sample = stratified_sample(ids, n_points, seed)
    note = "" if label_set.is_single else "; colour: first label"
    plot_tsne(tsne_2d(x[sample], seed), ids[sample], class_names, path,
              f"{title} ({len(sample)} points{note})")
    return sample
