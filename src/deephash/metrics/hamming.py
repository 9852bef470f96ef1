"""Retrieval metrics for binary codes, where Hamming distances tie massively.

A K-bit code has only K + 1 possible distances, so thousands of database items share each
distance and any single ranking of them is arbitrary: with ties broken by database index,
mAP depends on the database's order. The reported figures here are **tie-aware**
(McSherry & Najork, ECIR 2008): the expected value over all orderings of every tied group,
computed in closed form from per-distance counts, O(N + K) per query.

For a query with R relevant items, let a tied group (all items at one distance) hold n
items, r of them relevant, after c items of which R_b are relevant. A relevant item sits
at each position c+1..c+n with probability r/n, and then the expected number of relevant
items up to position i is R_b + 1 + (i-c-1)(r-1)/(n-1). So the group adds

    (r/n) * sum_{i=c+1}^{c+n} (R_b + 1 + (i-c-1)(r-1)/(n-1)) / i

to the sum of precisions, and tie-aware AP@all is that sum over groups divided by R
(0 when R = 0). The sums over i are harmonic-number differences. Without ties (every
n = 1) it equals ordinary AP.

kNN classification is tie-aware as well: the items strictly closer than the k-th
nearest distance vote fully, and the m places left are shared by the items at that
distance in proportion to their classes (each gets m/n of a vote). The class with the
most votes wins, the smallest label on an exact tie. Without ties at the k-th distance
this is the ordinary majority vote.

Cut-off metrics use expectations too: P@k = E[relevant in the top k] / k;
AP@k = E[sum of precisions at relevant items ranked <= k] / E[relevant in the top k]
(the DTSH/DeepHash divisor, as a ratio of expectations); 0 when nothing relevant can
reach the top k. Precision within Hamming radius r and the precision-recall curve over
radii need no ordering: a radius takes whole groups.

"Relevant" is whatever bool matrix the caller passes: the evaluators pass
:func:`deephash.labels.relevance` (a shared label), so all of the above holds for
multi-label data unchanged. Only the kNN vote needs one class id per item.
"""

from __future__ import annotations

import numpy as np


def harmonic_numbers(n: int) -> np.ndarray:
    """``(n + 1,)`` float64: H[0] = 0, H[i] = 1 + 1/2 + ... + 1/i."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64))])


def distance_histograms(distances: np.ndarray, relevant: np.ndarray,
                        n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, N)`` integer distances in [0, K] and bool relevance -> ``(Q, K+1)`` counts of
    all items and of relevant items at each distance."""
    n_queries = distances.shape[0]
    flat = (np.arange(n_queries)[:, None] * (n_bits + 1) + distances).ravel()
    size = n_queries * (n_bits + 1)
    counts = np.bincount(flat, minlength=size).reshape(n_queries, n_bits + 1)
    hits = np.bincount(flat, weights=relevant.ravel(), minlength=size)
    return counts, hits.reshape(n_queries, n_bits + 1).round().astype(np.int64)


def _group_terms(counts: np.ndarray, hits: np.ndarray, harmonic: np.ndarray,
                 stop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per group: expected sum of precisions of its relevant items, and their expected
    number, counting only positions <= ``stop`` (``(Q, 1)``; None = no cut-off)."""
    n = counts.astype(np.float64)
    r = hits.astype(np.float64)
    before = np.cumsum(counts, axis=1) - counts  # c
    relevant_before = (np.cumsum(hits, axis=1) - hits).astype(np.float64)  # R_b
    last = before + counts  # the group's positions are c+1 .. last
    if stop is not None:
        last = np.clip(np.minimum(last, stop), before, None)
    covered = (last - before).astype(np.float64)  # positions of the group inside the cut
    s0 = harmonic[last] - harmonic[before]  # sum 1/i
    s1 = covered - (before + 1) * s0  # sum (i - c - 1)/i
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        share = np.where(n > 0, r / np.maximum(n, 1), 0.0)
    precision_sum = share * ((relevant_before + 1) * s0 + slope * s1)
    expected_hits = share * covered
    return precision_sum, expected_hits


def tie_aware_average_precision(counts: np.ndarray, hits: np.ndarray,
                                cutoff: int | None = None) -> np.ndarray:
    """``(Q,)`` tie-aware AP@all (``cutoff=None``) or AP@cutoff, from the histograms."""
    n_items = int(counts.sum(axis=1).max()) if counts.size else 0
    harmonic = harmonic_numbers(n_items)
    stop = None if cutoff is None else np.full((counts.shape[0], 1), cutoff)
    precision_sum, expected_hits = _group_terms(counts, hits, harmonic, stop)
    numerator = precision_sum.sum(axis=1)
    denominator = hits.sum(axis=1).astype(np.float64) if cutoff is None else expected_hits.sum(1)
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def tie_aware_precision_at(counts: np.ndarray, hits: np.ndarray, k: int) -> np.ndarray:
    """``(Q,)`` expected fraction of relevant items in the top k (k' = min(k, N))."""
    harmonic = harmonic_numbers(int(counts.sum(axis=1).max()))
    _, expected_hits = _group_terms(counts, hits, harmonic, np.full((counts.shape[0], 1), k))
    return expected_hits.sum(axis=1) / np.minimum(k, counts.sum(axis=1))


def precision_recall_by_radius(counts: np.ndarray,
                               hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, K+1)`` precision and recall of retrieving everything within radius 0..K.

    Precision is 0 for a query with nothing within the radius (the convention of the
    hashing literature for "precision within Hamming radius 2"); recall is 0 when R = 0.
    """
    within = np.cumsum(counts, axis=1).astype(np.float64)
    found = np.cumsum(hits, axis=1).astype(np.float64)
    total = found[:, -1:]
    precision = np.divide(found, within, out=np.zeros_like(found), where=within > 0)
    recall = np.divide(found, total, out=np.zeros_like(found), where=total > 0)
    return precision, recall


def class_histograms(distances: np.ndarray, labels: np.ndarray, n_bits: int,
                     n_classes: int) -> np.ndarray:
    """``(Q, N)`` distances in [0, K] and ``(N,)`` database class ids in ``[0, C)`` ->
    ``(Q, K+1, C)`` counts."""
    n_queries = distances.shape[0]
    flat = ((np.arange(n_queries)[:, None] * (n_bits + 1) + distances) * n_classes
            + labels[None, :]).ravel()
    size = n_queries * (n_bits + 1) * n_classes
    return np.bincount(flat, minlength=size).reshape(n_queries, n_bits + 1, n_classes)


def tie_aware_knn(class_counts: np.ndarray, k: int) -> np.ndarray:
    """``(Q, K+1, C)`` class counts per distance -> ``(Q,)`` predicted labels (see above)."""
    per_distance = class_counts.sum(axis=2)  # (Q, K+1)
    reached = np.cumsum(per_distance, axis=1)
    boundary = np.argmax(reached >= min(k, int(reached[:, -1].min())), axis=1)  # (Q,)
    rows = np.arange(len(class_counts))
    closer = np.cumsum(class_counts, axis=1)[rows, boundary] - class_counts[rows, boundary]
    taken = reached[rows, boundary] - per_distance[rows, boundary]
    left = np.minimum(k, reached[:, -1]) - taken
    shared = class_counts[rows, boundary] * (left / per_distance[rows, boundary])[:, None]
    return np.argmax(closer + shared, axis=1).astype(np.int64)
