"""What users are shown, measured: a code run's P@k and mAP@k as served, against the rest.

For a hashing run's saved test codes (``codes/query.npz``, ``codes/database.npz`` with
their ``relaxed`` outputs) every query's top list is ranked five ways:

- ``served``: as ``search``, ``serve`` and the gallery rank it
  (:class:`deephash.index.rerank.CodeRanker`: Hamming, ties by the relaxed outputs under
  the run's training distance);
- ``index order``: Hamming, ties by database order (a plain top-k; what was served before);
- ``random ties``: Hamming, ties in the ranker's seeded random order (``--rerank none``);
- ``tie-aware``: the expectation over all orderings of the ties, in closed form
  (:mod:`deephash.metrics.hamming`; what ``metrics.json`` reports);
- ``float``: the relaxed outputs alone, ranked by the training distance (ties by index).

P@k and AP@k follow :mod:`deephash.metrics.retrieval` (AP@k divides by the relevant items
within the top k); a database item is relevant when it shares a label with the query
(:func:`deephash.labels.relevance`: class equality for single-label runs, a shared label
for multi-label ones, whose saved ``y`` is a multi-hot matrix). Also the median (and 90th
percentile) number of database items tied at the 10th result's Hamming distance. Queries
and database must be disjoint (the test protocols are).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deephash.errors import DataError
from deephash.hashing.codes import hamming_matrix
from deephash.index.rerank import CodeRanker
from deephash.labels import as_label_set, relevance
from deephash.metrics.hamming import (
    distance_histograms,
    tie_aware_average_precision,
    tie_aware_precision_at,
)
from deephash.metrics.ranking import ranking_order
from deephash.metrics.retrieval import average_precision, hits_at
from deephash.reporting.gallery import code_ranker, saved_vectors
from deephash.reporting.runs import RunRecord

RANKINGS = ("served", "index order", "random ties", "tie-aware", "float")
DESCRIBED = {"served": "served: ties by the relaxed outputs",
             "index order": "Hamming, ties in index order (before)",
             "random ties": "Hamming, ties at random (--rerank none)",
             "tie-aware": "tie-aware expectation of the codes",
             "float": "relaxed outputs alone (float)"}
CHUNK = 64


def list_metrics(top: np.ndarray, relevant: np.ndarray, precision_k: tuple[int, ...],
                 map_k: int) -> dict[str, float]:
    """Mean P@k and AP@``map_k`` of ``(Q, L)`` ranked database rows (L: the largest of the
    k, or the database's size), ``relevant`` ``(Q, N)`` bool."""
    sums = {**{f"p@{k}": 0.0 for k in precision_k}, f"map@{map_k}": 0.0}
    depth = max(map_k, *precision_k)
    for row, positions in enumerate(top):
        ranks = np.flatnonzero(relevant[row, positions[:depth]]) + 1
        for k, hits in zip(precision_k, hits_at(ranks, np.array(precision_k)), strict=True):
            sums[f"p@{k}"] += hits / min(k, relevant.shape[1])
        sums[f"map@{map_k}"] += average_precision(ranks, map_k)
    return {key: value / len(top) for key, value in sums.items()}


def measure_run(run: RunRecord, n_queries: int | None = None, seed: int = 0,
                precision_k: tuple[int, ...] = (10, 100), map_k: int = 1000) -> dict[str, Any]:
    """The five rankings' metrics of ``run`` over ``n_queries`` seeded queries (all: None)."""
    query, database = saved_vectors(run, "query"), saved_vectors(run, "database")
    if query is None or database is None or run.kind != "codes":
        raise DataError(f"{run.path} has no codes/query.npz and codes/database.npz; give a "
                        "hash run's folder (bits-<K>)")
    if "relaxed" not in query or "relaxed" not in database:
        raise DataError(f"{run.path}/codes has no relaxed outputs (saved since this version); "
                        "evaluate the run again (deephash hash --resume)")
    if np.intersect1d(query["index"], database["index"]).size:
        raise DataError(f"{run.path}: queries and database overlap; give a test protocol run")
    rows = np.arange(len(query["index"]))
    if n_queries is not None and n_queries < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, n_queries, replace=False))
    bits, n = int(run.metrics["bits"]), len(database["index"])
    depth = min(max(map_k, *precision_k), n)
    served = code_ranker(run, database)
    at_random = CodeRanker(database["vectors"], bits, rerank="none")
    database_labels = as_label_set(database["y"])  # (N,) ids or (N, C) multi-hot
    tops: dict[str, list[np.ndarray]] = {name: [] for name in RANKINGS if name != "tie-aware"}
    relevant_parts, counts_parts, hits_parts, tied = [], [], [], []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        codes, relaxed = query["vectors"][chunk], query["relaxed"][chunk]
        relevant = relevance(query["y"][chunk], database_labels)
        hamming = hamming_matrix(codes, database["vectors"])
        tops["served"].append(served.rank(codes, depth, relaxed).positions)
        tops["random ties"].append(at_random.rank(codes, depth).positions)
        tops["index order"].append(np.argsort(hamming, axis=1, kind="stable")[:, :depth])
        continuous = served.distance.ranking_matrix(  # type: ignore[union-attr]
            relaxed.astype(np.float32), database["relaxed"].astype(np.float32))
        tops["float"].append(np.stack([ranking_order(row)[:depth] for row in continuous]))
        counts, hits = distance_histograms(hamming, relevant, bits)
        counts_parts.append(counts)
        hits_parts.append(hits)
        relevant_parts.append(relevant)
        tied.append(served.rank(codes, 10).tied)
    relevant = np.concatenate(relevant_parts)
    metrics = {name: list_metrics(np.concatenate(top), relevant, precision_k, map_k)
               for name, top in tops.items()}
    counts, hits = np.concatenate(counts_parts), np.concatenate(hits_parts)
    metrics["tie-aware"] = {
        **{f"p@{k}": float(tie_aware_precision_at(counts, hits, k).mean()) for k in precision_k},
        f"map@{map_k}": float(tie_aware_average_precision(counts, hits, map_k).mean())}
    ties = np.concatenate(tied)
    return {"path": str(run.path), "protocol": run.protocol, "bits": bits,
            "train_distance": served.distance.name,  # type: ignore[union-attr]
            "n_query": len(rows), "n_database": n,
            "tied_at_10": {"median": float(np.median(ties)),
                           "p90": float(np.percentile(ties, 90))},
            "rankings": {name: metrics[name] for name in RANKINGS}}


def served_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per run and ranking (``results``: name -> :func:`measure_run`)."""
    lines = ["| run | ranking | P@10 | P@100 | mAP@1000 |", "|---|---|---|---|---|"]
    for name, result in results.items():
        header = (f"{name} ({result['bits']} bits, {result['n_query']:,} queries x "
                  f"{result['n_database']:,}; median {result['tied_at_10']['median']:,.0f} "
                  "items tied at the 10th distance)")
        for i, ranking in enumerate(RANKINGS):
            values = result["rankings"][ranking]
            cells = " | ".join(f"{values[key]:.4f}" for key in ("p@10", "p@100", "map@1000"))
            lines.append(f"| {header if i == 0 else ''} | {DESCRIBED[ranking]} | {cells} |")
    return "\n".join(lines) + "\n"
