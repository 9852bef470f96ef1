"""One figure per call: mAP and precision at k of query vectors against a database.

The library's front to the evaluators the commands use (:func:`evaluate_retrieval` for
float embeddings, :func:`~deephash.metrics.evaluate_codes.evaluate_codes` for codes), so
a figure here is the figure a run reports. ``distance="hamming"`` takes sign codes,
``(N, K)`` ±1 values (``ImageEmbedder.hash``) or real outputs whose signs are the codes
(sign(0) = +1; turn 0/1 bits into ±1 first), and its figures are tie-aware
(:mod:`deephash.metrics.hamming`: the expectation over every order of the items tied in
Hamming distance); the float distances (``euclidean``, ``sqeuclidean``, ``cosine``) rank
ties by database index. Definitions: :mod:`deephash.metrics.retrieval`. Labels are
``(N,)`` class ids, a :class:`~deephash.labels.LabelSet` or ``(N, C)`` multi-hot rows;
an item is relevant to a query when they share a label. ``query_ids``/``database_ids``:
a query is never matched with the database item of its own id (a query set inside the
database).
"""

from __future__ import annotations

import numpy as np
import torch

from deephash.errors import DataError
from deephash.hashing.codes import binarize, pack_codes
from deephash.labels import LabelsLike
from deephash.metrics.evaluate import EvaluationSpec, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes

Vectors = np.ndarray | torch.Tensor


def mean_average_precision(query: Vectors, database: Vectors, query_labels: LabelsLike,
                           database_labels: LabelsLike, *, distance: str = "cosine",
                           k: int | None = None, query_ids: np.ndarray | None = None,
                           database_ids: np.ndarray | None = None) -> float:
    """mAP of ``(Q, D)`` query vectors against ``(N, D)`` database vectors: mAP@all, or
    mAP@k (the DTSH/DeepHash divisor: the relevant items within the top k) for ``k``."""
    cutoffs = () if k is None else (_positive(k),)
    spec = EvaluationSpec(knn_k=(), map_cutoffs=cutoffs, precision_k=(), curve_points=2)
    metrics = _metrics(query, database, query_labels, database_labels, distance, spec,
                       query_ids, database_ids)
    return metrics[f"map@{cutoffs[0]}" if cutoffs else "map@all"]


def precision_at_k(query: Vectors, database: Vectors, query_labels: LabelsLike,
                   database_labels: LabelsLike, k: int, *, distance: str = "cosine",
                   query_ids: np.ndarray | None = None,
                   database_ids: np.ndarray | None = None) -> float:
    """Mean precision of the top ``k`` results of ``(Q, D)`` queries against ``(N, D)``
    database vectors (k' = min(k, items ranked) as divisor)."""
    k = _positive(k)
    spec = EvaluationSpec(knn_k=(), map_cutoffs=(), precision_k=(k,), curve_points=2)
    metrics = _metrics(query, database, query_labels, database_labels, distance, spec,
                       query_ids, database_ids)
    return metrics[f"p@{k}"]


def _positive(k: int) -> int:
    if int(k) != k or k < 1:
        raise DataError(f"k must be a whole number of results, at least 1, not {k}")
    return int(k)


def _array(vectors: Vectors) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        return vectors.detach().cpu().numpy()
    return np.asarray(vectors)


def _metrics(query: Vectors, database: Vectors, query_labels: LabelsLike,
             database_labels: LabelsLike, distance: str, spec: EvaluationSpec,
             query_ids: np.ndarray | None, database_ids: np.ndarray | None) -> dict[str, float]:
    q, d = _array(query), _array(database)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise DataError(f"query {q.shape} and database {d.shape} must be (Q, D) and (N, D) "
                        "vectors of one width")
    if distance != "hamming":
        return evaluate_retrieval(q, d, query_labels, database_labels, distance, spec,
                                  query_ids=query_ids, database_ids=database_ids).metrics
    return evaluate_codes(pack_codes(binarize(q)), pack_codes(binarize(d)), query_labels,
                          database_labels, q.shape[1], spec, query_ids=query_ids,
                          database_ids=database_ids).metrics


__all__ = ["mean_average_precision", "precision_at_k"]
