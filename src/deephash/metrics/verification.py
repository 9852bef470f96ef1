"""Verification metrics on fixed, seeded tuples of the query set.

Retrieval ranks a whole database; these two look at the tuples a triplet or siamese
network is trained on, drawn once from the labels and a seed
(:func:`~deephash.data.tuples.fixed_triplets`, :func:`~deephash.data.tuples.fixed_pairs`).
A positive shares a label with the anchor and a negative shares none
(:func:`deephash.labels.relevance`), so both scores mean the same on single- and
multi-label data:

- ``triplet_acc``: the fraction of triplets with d(a, p) < d(a, n); a tie counts 1/2.
- ``pair_auc``: the ROC AUC of the pairs' distances as a same / different score (smaller
  distance = more likely same), i.e. the probability that a random positive pair is
  closer than a random negative pair, a tie counting 1/2 (Mann-Whitney U / (n+ n-)).

Distances are the row-wise ones of :mod:`deephash.distances`, in float64: ``euclidean``,
``sqeuclidean``, ``cosine`` (1 - cos) or ``hamming`` (on the signs of the vectors, as for
codes).
"""

from __future__ import annotations

import numpy as np

from deephash.data.tuples import fixed_pairs, fixed_triplets
from deephash.distances import Distance, as_distance, names_offering
from deephash.errors import ConfigError
from deephash.labels import LabelsLike

VERIFICATION_DISTANCES = names_offering("rowwise")


def rowwise_distances(a: np.ndarray, b: np.ndarray, distance: str | Distance) -> np.ndarray:
    """``(n, D)`` and ``(n, D)`` -> ``(n,)`` float64 distances between matching rows."""
    return as_distance(distance).rowwise(a, b)


def triplet_accuracy(vectors: np.ndarray, triplets: np.ndarray,
                     distance: str | Distance) -> float:
    """``vectors`` ``(N, D)``, ``triplets`` ``(T, 3)`` rows of it -> accuracy in [0, 1]."""
    a, p, n = (vectors[triplets[:, i]] for i in range(3))
    d_ap, d_an = rowwise_distances(a, p, distance), rowwise_distances(a, n, distance)
    return float(np.mean((d_ap < d_an) + 0.5 * (d_ap == d_an)))


def pair_auc(vectors: np.ndarray, pairs: np.ndarray, distance: str | Distance) -> float:
    """``pairs`` ``(M, 3)`` rows (first, second, same) -> ROC AUC in [0, 1], ties halved.

    Needs both a positive and a negative pair.
    """
    d = rowwise_distances(vectors[pairs[:, 0]], vectors[pairs[:, 1]], distance)
    same = pairs[:, 2].astype(bool)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("pair AUC needs positive and negative pairs")
    # ranks of the score -d, ties sharing their mean rank (a group holding ranks e-c+1..e
    # gets e - (c - 1)/2); U = rank sum of the positives - n+(n+ + 1)/2
    _, group, counts = np.unique(-d, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[group]
    u = ranks[same].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def verification_metrics(vectors: np.ndarray, labels: LabelsLike, distance: str | Distance,
                         seed: int, n: int = 10_000) -> dict[str, float]:
    """``{"triplet_acc", "pair_auc"}`` on ``n`` fixed triplets and ``n`` fixed pairs of
    ``vectors`` ``(N, D)`` with the label set ``labels`` of N images (``(N,)`` class ids, a
    :class:`~deephash.labels.LabelSet` or a multi-hot matrix); empty when the labels cannot
    form a triplet (no item with both a positive and a negative)."""
    try:
        triplets = fixed_triplets(labels, n, seed)
        pairs = fixed_pairs(labels, n, seed)
    except ConfigError:
        return {}
    metrics = {"triplet_acc": triplet_accuracy(vectors, triplets, distance)}
    if pairs[:, 2].any() and not pairs[:, 2].all():
        metrics["pair_auc"] = pair_auc(vectors, pairs, distance)
    return metrics
