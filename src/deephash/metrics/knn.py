"""k-nearest-neighbour classification from a ranking.

A query is assigned the majority label of its k nearest database items (ties in distance
broken by database index, see :mod:`deephash.metrics.ranking`). When several labels share
the most votes, the one whose nearest member ranks first wins, so k=1 is exactly 1-NN.
kNN accuracy is the fraction of queries whose assigned label equals their own.

It is defined for single-label sets only (:attr:`deephash.labels.LabelSet.is_single`): a
query with several labels has no one label to predict, and the field reports no kNN figure
on multi-label benchmarks, so the evaluators leave the ``knn_acc@k`` keys out there. An
unlabelled database item votes for a class of its own, which is never a query's label; an
unlabelled query is never counted correct.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deephash.labels import LabelSet


class KnnVotes(NamedTuple):
    """Class ids for the vote: ``query`` ``(Q,)`` (-1 for unlabelled), ``database`` ``(N,)``
    with an unlabelled item's id replaced by ``n_classes - 1``, a class no query has."""

    query: np.ndarray
    database: np.ndarray
    n_classes: int


def knn_votes(query: LabelSet, database: LabelSet) -> KnnVotes:
    """The ids two single-label sets vote and are judged with (see the module docstring)."""
    n_classes = max(query.n_classes, database.n_classes)
    return KnnVotes(query.ids, np.where(database.ids < 0, n_classes, database.ids),
                    n_classes + 1)


def knn_predict(neighbor_labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """Majority vote among the first ``k`` columns.

    Args:
        neighbor_labels: ``(Q, K)`` int labels of the nearest items, nearest first, K >= k.
        k: votes to count.
        n_classes: labels lie in ``range(n_classes)``.

    Returns:
        ``(Q,)`` int64 predicted labels.
    """
    labels = neighbor_labels[:, :k]
    n_queries = labels.shape[0]
    votes = np.zeros((n_queries, n_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(n_queries)[:, None], labels), 1)
    first = np.full((n_queries, n_classes), k, dtype=np.int64)
    positions = np.broadcast_to(np.arange(k), labels.shape)
    np.minimum.at(first, (np.arange(n_queries)[:, None], labels), positions)
    # more votes first; among equal votes, the earliest first member
    return np.argmax(votes * (k + 1) + (k - first), axis=1).astype(np.int64)
