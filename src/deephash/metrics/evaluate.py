"""One pass over the query set that computes every retrieval and kNN metric.

Queries are processed in chunks of ``chunk_size`` rows, so memory stays at a few
``chunk_size x N`` float32 matrices (about 50 MB per chunk for N = 50,000) whatever the
number of queries. Distances are computed with torch; the per-query ranking work runs in
a thread pool (NumPy releases the GIL while sorting).

Labels are label sets (:mod:`deephash.labels`): ``(N,)`` int class ids as callers pass
them, a :class:`~deephash.labels.LabelSet`, or an ``(N, C)`` multi-hot matrix. Relevance
is :func:`deephash.labels.relevance` (a shared label). kNN accuracy exists only when both
sides are single-label (every image has at most one label); for multi-label sets its keys
are left out, as the field reports only mAP, P@k and PR curves there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from deephash.errors import DataError
from deephash.labels import LabelSet, LabelsLike, as_label_set, relevance
from deephash.metrics.distances import get_distance
from deephash.metrics.knn import knn_predict, knn_votes
from deephash.metrics.ranking import rank_query
from deephash.metrics.retrieval import hits_at, precisions_at_hits
from deephash.progress import progress_bar


@dataclass(frozen=True)
class EvaluationSpec:
    """Which cut-offs to report. Keys: ``knn_acc@k`` (single-label sets only),
    ``map@all``, ``map@k``, ``p@k``."""

    knn_k: tuple[int, ...] = (1, 5, 10)
    map_cutoffs: tuple[int, ...] = (1000,)
    precision_k: tuple[int, ...] = (10, 100)
    curve_points: int = 100


@dataclass
class RetrievalReport:
    """Flat metrics (numbers in [0, 1]) and the mean precision-recall curve.

    ``curve_cutoffs[i]`` is a rank cut-off; ``curve_precision[i]`` and ``curve_recall[i]``
    are P@cutoff and R@cutoff averaged over queries.
    """

    metrics: dict[str, float]
    curve_cutoffs: np.ndarray
    curve_precision: np.ndarray
    curve_recall: np.ndarray
    per_query_ap: np.ndarray = field(repr=False)


def _curve_cutoffs(n_items: int, points: int) -> np.ndarray:
    """Cut-offs 1..N, evenly spaced on a log scale (dense where precision changes fast)."""
    return np.unique(np.geomspace(1, n_items, num=max(points, 2)).round().astype(np.int64))


def _self_columns(query_ids: np.ndarray | None, database_ids: np.ndarray | None,
                  n_queries: int) -> np.ndarray:
    """``(Q,)`` database column holding each query itself, or -1."""
    columns = np.full(n_queries, -1, dtype=np.int64)
    if query_ids is None or database_ids is None:
        return columns
    order = np.argsort(database_ids, kind="stable")
    position = np.searchsorted(database_ids[order], query_ids)
    found = position < len(database_ids)
    found[found] = database_ids[order][position[found]] == query_ids[found]
    columns[found] = order[position[found]]
    return columns


def _score_chunk(distances: np.ndarray, labels: LabelSet, database_labels: LabelSet,
                 self_columns: np.ndarray, spec: EvaluationSpec, cutoffs: np.ndarray,
                 knn_k: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Rank and score a chunk: ``distances`` ``(Q, N)`` of the chunk's Q queries with label
    set ``labels``; ``knn_k``: the kNN cut-offs (empty for multi-label sets)."""
    rows = np.flatnonzero(self_columns >= 0)
    distances[rows, self_columns[rows]] = np.inf
    relevant = relevance(labels, database_labels)  # (Q, N)
    relevant[rows, self_columns[rows]] = False
    n_ranked = distances.shape[1] - (self_columns >= 0)
    map_cutoffs = np.asarray(spec.map_cutoffs, dtype=np.int64)
    precision_k = np.asarray(spec.precision_k, dtype=np.int64)
    all_cutoffs = np.concatenate([map_cutoffs, precision_k, cutoffs])
    k_top = max(knn_k, default=0)
    out = {"ap": np.zeros(len(labels)), "ap_at": np.zeros((len(labels), len(map_cutoffs))),
           "hits": np.zeros((len(labels), len(all_cutoffs)), dtype=np.int64),
           "n_relevant": np.zeros(len(labels), dtype=np.int64),
           "top": np.zeros((len(labels), k_top), dtype=np.int64)}
    for q in range(len(labels)):
        ranks, out["top"][q] = rank_query(distances[q], relevant[q], k_top)
        precisions = precisions_at_hits(ranks)
        hits = hits_at(ranks, all_cutoffs)
        out["n_relevant"][q] = len(ranks)
        out["hits"][q] = hits
        if len(ranks):
            out["ap"][q] = precisions.mean()
            within = hits[: len(map_cutoffs)]
            sums = np.concatenate([[0.0], np.cumsum(precisions)])[within]
            out["ap_at"][q] = np.divide(sums, within, out=np.zeros(len(within)),
                                        where=within > 0)
    top = out.pop("top")
    if knn_k:
        votes = knn_votes(labels, database_labels)
        out["knn_correct"] = np.stack(
            [knn_predict(votes.database[top], k, votes.n_classes) == votes.query
             for k in knn_k], axis=1)
    out["n_ranked"] = n_ranked
    return out


ChunkDistances = Callable[[int, int], np.ndarray]


def evaluate_retrieval(query: np.ndarray | torch.Tensor, database: np.ndarray | torch.Tensor,
                       query_labels: LabelsLike, database_labels: LabelsLike,
                       distance: str = "cosine", spec: EvaluationSpec | None = None, *,
                       query_ids: np.ndarray | None = None,
                       database_ids: np.ndarray | None = None,
                       chunk_size: int = 256, workers: int | None = None) -> RetrievalReport:
    """kNN accuracy, mAP@all, mAP@k, P@k and the PR curve of ``query`` against ``database``.

    Args:
        query: ``(Q, D)`` embeddings; database: ``(N, D)``.
        query_labels, database_labels: label sets of Q and N images (``(Q,)`` int class
            ids, a :class:`~deephash.labels.LabelSet` or an ``(Q, C)`` multi-hot matrix);
            kNN accuracy only when both are single-label.
        distance: ``euclidean``, ``sqeuclidean`` or ``cosine``.
        query_ids, database_ids: optional ``(Q,)``/``(N,)`` item identities (pool indices);
            a query never matches the database item with its own id.

    Definitions are in :mod:`deephash.metrics.retrieval` and :mod:`deephash.metrics.knn`;
    ties are broken by database index.
    """
    metric = get_distance(distance)
    q = metric.prepare(torch.as_tensor(np.asarray(query)))
    d = metric.prepare(torch.as_tensor(np.asarray(database)))
    if not (torch.isfinite(q).all() and torch.isfinite(d).all()):
        raise DataError("embeddings contain NaN or infinite values; cannot rank them")
    d_sq = (d * d).sum(1)
    scratch = torch.empty(min(chunk_size, len(q)) * len(d), dtype=torch.float64)

    def chunk(start: int, stop: int) -> np.ndarray:
        with torch.inference_mode():
            return metric.evaluation_matrix(q[start:stop], d, d_sq, scratch).numpy()

    return rank_and_score(chunk, query_labels, database_labels, spec or EvaluationSpec(),
                          query_ids=query_ids, database_ids=database_ids,
                          chunk_size=chunk_size, workers=workers, desc=f"ranking {distance}")


def rank_and_score(distances: ChunkDistances, query_labels: LabelsLike,
                   database_labels: LabelsLike, spec: EvaluationSpec, *,
                   query_ids: np.ndarray | None, database_ids: np.ndarray | None,
                   chunk_size: int, workers: int | None, desc: str) -> RetrievalReport:
    """The shared engine: ``distances(start, stop)`` gives the ``(stop - start, N)`` float32
    distances of a chunk of queries; each chunk is ranked and scored in a thread pool."""
    query_labels, database_labels = as_label_set(query_labels), as_label_set(database_labels)
    n_items = len(database_labels)
    single = query_labels.is_single and database_labels.is_single
    knn_k = spec.knn_k if single else ()
    largest_k = max([*knn_k, 1])
    if n_items - (1 if query_ids is not None else 0) < largest_k:
        raise DataError(f"database has {n_items} items; kNN with k={largest_k} needs more")
    cutoffs = _curve_cutoffs(n_items, spec.curve_points)
    self_columns = _self_columns(query_ids, database_ids, len(query_labels))
    workers = workers or torch.get_num_threads()
    bar = progress_bar(len(query_labels), desc, unit="query")
    results: list[dict[str, np.ndarray]] = []
    pending: list[Future[dict[str, np.ndarray]]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(query_labels), chunk_size):
            stop = min(start + chunk_size, len(query_labels))
            chunk = distances(start, stop)
            while len(pending) >= workers:  # bound memory: at most `workers` chunks queued
                results.append(pending.pop(0).result())
                bar.update(len(results[-1]["ap"]))
            pending.append(pool.submit(_score_chunk, chunk, query_labels[start:stop],
                                       database_labels, self_columns[start:stop], spec,
                                       cutoffs, knn_k))
        for future in pending:
            results.append(future.result())
            bar.update(len(results[-1]["ap"]))
    bar.close()
    return _summarise(results, spec, cutoffs)


def _summarise(results: Sequence[dict[str, np.ndarray]], spec: EvaluationSpec,
               cutoffs: np.ndarray) -> RetrievalReport:
    def cat(key: str) -> np.ndarray:
        return np.concatenate([r[key] for r in results])

    ap, ap_at, hits = cat("ap"), cat("ap_at"), cat("hits")
    n_relevant, n_ranked = cat("n_relevant"), cat("n_ranked")
    n_map, n_p = len(spec.map_cutoffs), len(spec.precision_k)
    metrics: dict[str, float] = {}
    if results and "knn_correct" in results[0]:
        correct = cat("knn_correct")
        for i, k in enumerate(spec.knn_k):
            metrics[f"knn_acc@{k}"] = float(correct[:, i].mean())
    metrics["map@all"] = float(ap.mean())
    for i, k in enumerate(spec.map_cutoffs):
        metrics[f"map@{k}"] = float(ap_at[:, i].mean())
    for i, k in enumerate(spec.precision_k):
        metrics[f"p@{k}"] = float((hits[:, n_map + i] / np.minimum(k, n_ranked)).mean())
    curve_hits = hits[:, n_map + n_p:]
    precision = (curve_hits / np.minimum(cutoffs[None, :], n_ranked[:, None])).mean(0)
    recall = np.divide(curve_hits, n_relevant[:, None], out=np.zeros(curve_hits.shape),
                       where=n_relevant[:, None] > 0).mean(0)
    return RetrievalReport(metrics, cutoffs, precision, recall, ap)
