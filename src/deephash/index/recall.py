"""Recall@k of an index against exact search, on a seeded sample of its own vectors.

Queries: at most ``n_queries`` rows of the database, drawn with ``seed`` (each query is
also in the database, as a user's item query is). Exact search is faiss's flat scan over
the same vectors (``IndexBinaryFlat`` for codes, ``faiss.knn`` for floats, under the
index's metric). With ``d_k`` the exact distance of the k-th nearest,

    recall@k = mean over queries of |{r in the index's top k : d(q, r) <= d_k}| / k

where ``d`` is the *true* distance (Hamming, or computed from the stored float vectors, not
a compressed code's estimate). Any item as near as the k-th true neighbour counts as a hit:
for binary codes, where many items tie at d_k, returning another of the tied items is no
miss (the usual set intersection would count it as one, and would put even an exact index
below 1.0 where ties are broken differently). Without ties it is the usual
``|top-k ∩ exact top-k| / k`` (float distances within float32 rounding, 1e-6 relative, of
``d_k`` count as tied). An index with fewer than k rows uses k = its size.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from deephash.index.base import BinaryIndex, RetrievalIndex, padded_bits
from deephash.index.faiss_library import faiss

#: the default number of sampled queries
RECALL_QUERIES = 1000


class Recall(NamedTuple):
    value: float  # mean recall@k over the queries, in [0, 1]
    k: int
    queries: int


class RecallSample(NamedTuple):
    """The queries recall is measured on and their exact answers (:func:`recall_sample`):
    computed once, searched at as many settings as wanted."""

    database: np.ndarray  # (N, W) the index's rows, checked
    queries: np.ndarray  # (Q, W) sampled rows of the database
    kth: np.ndarray  # (Q,) each query's exact k-th nearest distance
    k: int  # at most N


def _true_distances(index: RetrievalIndex, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(Q, k)`` true distances from ``(Q, W)`` queries to ``(Q, k, W)`` rows, in the
    index's terms (Hamming; squared L2; cosine distance of normalised vectors)."""
    if isinstance(index, BinaryIndex):
        return np.unpackbits(queries[:, None, :] ^ rows, axis=2).sum(axis=2, dtype=np.int64)
    if getattr(index, "metric", "l2") == "cosine":
        return 1 - np.einsum("qd,qkd->qk", queries, rows, dtype=np.float64)
    return ((rows.astype(np.float64) - queries[:, None, :]) ** 2).sum(axis=2)


def _exact_kth(index: RetrievalIndex, queries: np.ndarray, database: np.ndarray,
               k: int) -> np.ndarray:
    """``(Q,)`` the true distance of each query's k-th nearest row."""
    if isinstance(index, BinaryIndex):
        flat = faiss.IndexBinaryFlat(padded_bits(index.dim))
        flat.add(database)
        positions = flat.search(queries, k)[1]
    else:
        metric = (faiss.METRIC_INNER_PRODUCT if getattr(index, "metric", "l2") == "cosine"
                  else faiss.METRIC_L2)
        positions = faiss.knn(queries, database, k, metric=metric)[1]
    return _true_distances(index, queries, database[positions]).max(axis=1)


def recall_at_k(index: RetrievalIndex, vectors: np.ndarray, k: int = 10,
                n_queries: int = RECALL_QUERIES, seed: int = 0,
                sample: RecallSample | None = None) -> Recall:
    """Recall@k (module docstring) of ``index``, which holds ``vectors`` (``(N, W)``, the
    rows it was given, in insertion order); ``sample``: :func:`recall_sample`'s, reused
    (then ``k``, ``n_queries`` and ``seed`` are its own)."""
    sample = sample or recall_sample(index, vectors, k, n_queries, seed)
    return _recall(index, sample)[0]


def recall_by_nprobe(index: RetrievalIndex, vectors: np.ndarray, values: list[int],
                     k: int = 10, n_queries: int = RECALL_QUERIES, seed: int = 0,
                     enough: float | None = None, sample: RecallSample | None = None
                     ) -> list[tuple[int, Recall, float]]:
    """For each ``nprobe`` of ``values`` (until the first whose recall reaches ``enough``):
    it, the recall@k of ``index`` (an IVF) searched with it on the queries
    :func:`recall_at_k` draws (exact search done once, or ``sample``'s reused), and the
    mean milliseconds per query of that batched search; the index's settings are restored
    after."""
    sample = sample or recall_sample(index, vectors, k, n_queries, seed)
    before = index.settings.get("nprobe")
    found = []
    try:
        for nprobe in values:
            index.configure(nprobe=nprobe)
            recall, seconds = _recall(index, sample)
            found.append((nprobe, recall, seconds * 1000 / len(sample.queries)))
            if enough is not None and recall.value >= enough:
                break
    finally:
        index.configure(nprobe=before)
    return found


def recall_sample(index: RetrievalIndex, vectors: np.ndarray, k: int = 10,
                  n_queries: int = RECALL_QUERIES, seed: int = 0) -> RecallSample:
    """The seeded query sample of ``index`` holding ``vectors`` and the exact k-th
    distances (one exact search): what :func:`recall_at_k` and :func:`recall_by_nprobe`
    measure against."""
    database = index._check(vectors)
    n = len(database)
    if n != index.ntotal or n == 0:
        raise ValueError(f"{n} vectors for an index of {index.ntotal} rows")
    k = min(k, n)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n_queries, n), replace=False))
    queries = database[rows]
    return RecallSample(database, queries, _exact_kth(index, queries, database, k), k)


def _recall(index: RetrievalIndex, sample: RecallSample) -> tuple[Recall, float]:
    """The index's recall@k on the sample's queries, and the seconds its search of them
    took."""
    database, queries, kth, k = sample
    start = time.perf_counter()
    positions = index._search(queries, k)[1]
    seconds = time.perf_counter() - start
    found = positions >= 0
    true = _true_distances(index, queries, database[np.maximum(positions, 0)])
    tolerance = 0 if isinstance(index, BinaryIndex) else 1e-6 * (1 + np.abs(kth))
    hits = found & (true <= (kth + tolerance)[:, None])
    return Recall(float(hits.sum(axis=1).mean() / k), k, len(queries)), seconds
