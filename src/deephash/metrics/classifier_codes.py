"""Classifier-output codes: the yardstick of Sablayrolles, Douze, Usunier & Jégou, "How
should we evaluate supervised hashing?" (ICASSP 2017, arXiv 1609.06753).

A trained classifier is itself a hashing scheme. Each database image is stored as its
predicted class, ``ceil(log2 C)`` bits; a query keeps its full output, the ``(C,)`` class
probabilities, and the database is ranked by the probability the query gives each item's
stored class (an asymmetric comparison, like a product quantiser's). All items of one
predicted class tie. On the protocols where queries and database share the training
classes this trivial code matches or beats many supervised hashing methods at a fraction of
their bits; on classes the classifier never saw it has nothing to say (every unseen image
is stored as some seen class), which is what the unseen-class protocol shows.

The ranking is expressed as integer distances, so the tie-aware machinery of
:mod:`deephash.metrics.hamming` applies unchanged: an item's distance is the *competition
rank* of its class in the query's probability order (the number of classes with a strictly
higher probability, 0..C-1; equal probabilities share a rank, so their items tie too).

Figures (the keys of :func:`deephash.metrics.evaluate_codes.evaluate_codes`):
``map@all`` and ``map@k`` (tie-aware, the expectation over all orders of the ties),
``p@k`` (expected), and their ``_index_order`` variants (ties broken by database index, as
published code does). Not computed: kNN accuracy (the classifier's own accuracy is the
figure there) and precision within a Hamming radius (the distances are not Hamming).
Relevance is :func:`deephash.labels.relevance`, so the true labels may be multi-label;
the classifier's classes need not be the labels' (on the unseen-class protocol they are
not).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deephash.errors import DataError
from deephash.labels import LabelsLike, as_label_set, relevance
from deephash.metrics.evaluate import EvaluationSpec, _self_columns, rank_and_score
from deephash.metrics.hamming import (
    distance_histograms,
    tie_aware_average_precision,
    tie_aware_precision_at,
)


def code_length(n_classes: int) -> int:
    """Bits of one database code: ``ceil(log2 C)`` (a class id)."""
    return max(int(n_classes) - 1, 0).bit_length()


def class_ranks(probabilities: np.ndarray) -> np.ndarray:
    """``(Q, C)`` class probabilities -> ``(Q, C)`` int64 competition rank of each class in
    its row: the number of classes with a strictly higher probability."""
    q, c = probabilities.shape
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ordered = np.take_along_axis(probabilities, order, axis=1)
    starts = np.ones((q, c), dtype=np.bool_)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    position = np.broadcast_to(np.arange(c, dtype=np.int64), (q, c))
    group_start = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    ranks = np.empty((q, c), dtype=np.int64)
    np.put_along_axis(ranks, order, group_start, axis=1)
    return ranks


def evaluate_classifier_codes(query_probabilities: np.ndarray, database_classes: np.ndarray,
                              query_labels: LabelsLike, database_labels: LabelsLike,
                              spec: EvaluationSpec | None = None, *,
                              query_ids: np.ndarray | None = None,
                              database_ids: np.ndarray | None = None,
                              chunk_size: int = 256,
                              workers: int | None = None) -> dict[str, float]:
    """Retrieval figures of classifier-output codes (see the module docstring).

    Args:
        query_probabilities: ``(Q, C)`` the classifier's class probabilities of the
            queries (any scores whose order is the probabilities' order will do).
        database_classes: ``(N,)`` int class predicted for each database image, in [0, C).
        query_labels, database_labels: the true label sets of the Q and N images
            (``(Q,)`` ids, a :class:`~deephash.labels.LabelSet` or a multi-hot matrix).
        spec: the cut-offs (its ``knn_k`` is not used).
        query_ids, database_ids: a query never matches the database item with its id.

    Returns ``map@all``, ``map@k``, ``p@k`` (tie-aware) and the same with the suffix
    ``_index_order``, and ``bits`` (:func:`code_length`).
    """
    spec = dataclasses.replace(spec or EvaluationSpec(), knn_k=())
    probabilities = np.asarray(query_probabilities)
    classes = np.asarray(database_classes)
    yq, yd = as_label_set(query_labels), as_label_set(database_labels)
    _check(probabilities, classes, len(yq), len(yd))
    n_classes = probabilities.shape[1]
    self_columns = _self_columns(query_ids, database_ids, len(yq))
    counts_parts, hits_parts = [], []

    def chunk(start: int, stop: int) -> np.ndarray:
        distances = class_ranks(probabilities[start:stop])[:, classes]  # (q, N) in [0, C)
        relevant = relevance(yq[start:stop], yd)
        rows = np.flatnonzero(self_columns[start:stop] >= 0)
        cols = self_columns[start:stop][rows]
        distances[rows, cols] = n_classes  # an extra bin, dropped below
        relevant[rows, cols] = False
        counts, hits = distance_histograms(distances, relevant, n_classes)
        counts_parts.append(counts[:, :n_classes])
        hits_parts.append(hits[:, :n_classes])
        return distances.astype(np.float32)

    ranked = rank_and_score(chunk, yq, yd, spec, query_ids=query_ids, database_ids=database_ids,
                            chunk_size=chunk_size, workers=workers, desc="ranking classifier codes")
    counts, hits = np.concatenate(counts_parts), np.concatenate(hits_parts)
    metrics = {"map@all": float(tie_aware_average_precision(counts, hits).mean())}
    for k in spec.map_cutoffs:
        metrics[f"map@{k}"] = float(tie_aware_average_precision(counts, hits, k).mean())
    for k in spec.precision_k:
        metrics[f"p@{k}"] = float(tie_aware_precision_at(counts, hits, k).mean())
    metrics.update({f"{key}_index_order": value for key, value in ranked.metrics.items()})
    metrics["bits"] = code_length(n_classes)
    return metrics


def _check(probabilities: np.ndarray, classes: np.ndarray, n_query: int,
           n_database: int) -> None:
    """One-line errors for inputs that do not fit together."""
    if probabilities.ndim != 2 or len(probabilities) != n_query:
        raise DataError(f"query probabilities must be ({n_query}, C), one row per query "
                        f"label, not {probabilities.shape}")
    if probabilities.shape[1] < 1:
        raise DataError("query probabilities need at least one class column")
    if not np.isfinite(probabilities).all():
        raise DataError("query probabilities contain NaN or infinite values; cannot rank them")
    if classes.ndim != 1 or len(classes) != n_database or classes.dtype.kind not in "iu":
        raise DataError(f"database classes must be ({n_database},) integers, one per database "
                        f"label, not {classes.shape} {classes.dtype}")
    if classes.size and (classes.min() < 0 or classes.max() >= probabilities.shape[1]):
        raise DataError(f"database classes must lie in [0, {probabilities.shape[1]}), the "
                        "query probabilities' columns")
