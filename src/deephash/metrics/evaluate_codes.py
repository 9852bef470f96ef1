"""Every retrieval metric for packed binary codes under Hamming distance.

The reported kNN accuracy, mAP@all, mAP@k and P@k are tie-aware (see
:mod:`deephash.metrics.hamming`): they do not depend on the database's order. With
``index_order=True`` the versions that break ties by database index are added with the
suffix ``_index_order``, for comparison with published numbers, which break ties that way
(or arbitrarily). On a database sorted by class, index order can be badly wrong: a
collapsed code would "retrieve" the first class for every query. ``prec@r2`` is the
precision within Hamming radius 2, 0 for a query with nothing that close.

Labels are label sets (:mod:`deephash.labels`) and relevance is a shared label. On
multi-label sets every metric above keeps its meaning except kNN accuracy, which has none
(a query with several labels has no single label to predict): its keys are left out, and
the figures the field reports there are ``map@k`` (mAP@5000 on NUS-WIDE and MS-COCO,
mAP@1000 on ImageNet-100), ``map@k_index_order`` (DeepHash-pytorch's ``CalcTopMap``),
``p@k``, ``prec@r2`` and the precision-recall curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deephash.hashing.codes import hamming_matrix
from deephash.labels import LabelsLike, as_label_set, relevance
from deephash.metrics.evaluate import EvaluationSpec, _self_columns, rank_and_score
from deephash.metrics.hamming import (
    class_histograms,
    distance_histograms,
    precision_recall_by_radius,
    tie_aware_average_precision,
    tie_aware_knn,
    tie_aware_precision_at,
)
from deephash.metrics.knn import knn_votes


@dataclass
class CodeReport:
    """Flat metrics, and mean precision and recall at Hamming radius 0..K (``(K+1,)``)."""

    metrics: dict[str, float]
    radius_precision: np.ndarray
    radius_recall: np.ndarray
    per_query_ap: np.ndarray


def evaluate_codes(query_codes: np.ndarray, database_codes: np.ndarray,
                   query_labels: LabelsLike, database_labels: LabelsLike, n_bits: int,
                   spec: EvaluationSpec | None = None, *, query_ids: np.ndarray | None = None,
                   database_ids: np.ndarray | None = None, index_order: bool = False,
                   radius: int = 2, chunk_size: int = 256,
                   workers: int | None = None) -> CodeReport:
    """Metrics of packed ``(Q, ceil(K/8))`` query codes against ``(N, ceil(K/8))`` codes.

    ``query_labels``/``database_labels``: label sets of the Q and N images (``(Q,)`` int
    class ids, a :class:`~deephash.labels.LabelSet` or a multi-hot matrix); kNN accuracy
    only when both are single-label. ``query_ids``/``database_ids``: a query never matches
    the database item with its id.
    """
    spec = spec or EvaluationSpec()
    yq, yd = as_label_set(query_labels), as_label_set(database_labels)
    self_columns = _self_columns(query_ids, database_ids, len(yq))
    knn_k = spec.knn_k if yq.is_single and yd.is_single else ()
    counts_parts, hits_parts, knn_parts = [], [], []

    def chunk(start: int, stop: int) -> np.ndarray:
        distances = hamming_matrix(query_codes[start:stop], database_codes)
        relevant = relevance(yq[start:stop], yd)
        rows = np.flatnonzero(self_columns[start:stop] >= 0)
        cols = self_columns[start:stop][rows]
        distances[rows, cols] = n_bits + 1  # an extra bin, dropped below
        relevant[rows, cols] = False
        counts, hits = distance_histograms(distances, relevant, n_bits + 1)
        counts_parts.append(counts[:, : n_bits + 1])
        hits_parts.append(hits[:, : n_bits + 1])
        if knn_k:
            votes = knn_votes(yq[start:stop], yd)
            classes = class_histograms(distances, votes.database, n_bits + 1, votes.n_classes)
            knn_parts.append(np.stack([tie_aware_knn(classes[:, : n_bits + 1], k) == votes.query
                                       for k in knn_k], axis=1))
        return distances.astype(np.float32)

    ranked = rank_and_score(chunk, yq, yd, spec, query_ids=query_ids, database_ids=database_ids,
                            chunk_size=chunk_size, workers=workers, desc="ranking hamming")
    counts, hits = np.concatenate(counts_parts), np.concatenate(hits_parts)
    ap = tie_aware_average_precision(counts, hits)
    correct = np.concatenate(knn_parts) if knn_k else np.zeros((len(yq), 0))
    metrics = {f"knn_acc@{k}": float(correct[:, i].mean()) for i, k in enumerate(knn_k)}
    metrics["map@all"] = float(ap.mean())
    for k in spec.map_cutoffs:
        metrics[f"map@{k}"] = float(tie_aware_average_precision(counts, hits, k).mean())
    for k in spec.precision_k:
        metrics[f"p@{k}"] = float(tie_aware_precision_at(counts, hits, k).mean())
    precision, recall = precision_recall_by_radius(counts, hits)
    metrics[f"prec@r{radius}"] = float(precision[:, min(radius, n_bits)].mean())
    if index_order:
        metrics.update({f"{k}_index_order": v for k, v in ranked.metrics.items()})
    return CodeReport(metrics, precision.mean(0), recall.mean(0), ap)
