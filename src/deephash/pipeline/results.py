"""Evaluate pool embeddings on a protocol and write the run folder's results: ``metrics.json``,
``pr_curve.json``/``.png``, ``tsne.png`` and the vectors (``embeddings/`` or ``codes/``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from deephash.data import ImageDataset, Splits
from deephash.distances import HammingDistance, scoring_distance
from deephash.fileio import save_json, save_npz
from deephash.labels import LabelSet, LabelsLike, as_label_set
from deephash.metrics import EvaluationSpec, RetrievalReport, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.metrics.names import headline
from deephash.metrics.verification import verification_metrics
from deephash.pipeline.config import EvalConfig
from deephash.pipeline.protocol import protocol_evaluation
from deephash.viz.curves import plot_pr_curve
from deephash.viz.tsne import tsne_plot

log = logging.getLogger(__name__)


def write_embeddings(run: Path, name: str, x: np.ndarray, y: LabelsLike,
                     index: np.ndarray) -> None:
    """``run/embeddings/<name>.npz``: ``x`` ``(N, D)`` float32, labels ``y`` (``(N,)``
    int64 class ids, or ``(N, C)`` bool multi-hot for multi-label data) and pool indices
    ``index`` ``(N,)`` int64."""
    save_npz(run / "embeddings" / f"{name}.npz", x=np.asarray(x, dtype=np.float32),
             y=as_label_set(y).as_array(), index=np.asarray(index, dtype=np.int64))


def evaluation_spec(cfg: EvalConfig) -> EvaluationSpec:
    """The k values of ``cfg`` (kNN accuracy, mAP@k, P@k) as the metrics' spec."""
    return EvaluationSpec(knn_k=cfg.knn_k, map_cutoffs=cfg.map_cutoffs,
                          precision_k=cfg.precision_k)


def evaluate_split(embeddings: np.ndarray, labels: LabelSet, queries: np.ndarray,
                   database: np.ndarray, cfg: EvalConfig) -> RetrievalReport:
    """Metrics of pool rows ``queries`` against pool rows ``database``.

    Pool indices serve as identities, so a query never retrieves itself.
    """
    return evaluate_retrieval(embeddings[queries], embeddings[database], labels[queries],
                              labels[database], cfg.distance, evaluation_spec(cfg),
                              query_ids=queries, database_ids=database)


def validation_report(embeddings: np.ndarray, labels: LabelSet, splits: Splits,
                      cfg: EvalConfig) -> RetrievalReport:
    """Model-selection metrics: validation queries against the training part."""
    return evaluate_split(embeddings, labels, splits.val, splits.train, cfg)


def _float_results(run: Path, embeddings: np.ndarray, labels: LabelSet, splits: Splits,
                   cfg: EvalConfig) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Float embeddings: metrics, ``embeddings/*.npz`` and the rank-cut-off PR curve."""
    test = evaluate_split(embeddings, labels, splits.query, splits.database, cfg)
    for name, rows in (("query", splits.query), ("database", splits.database)):
        write_embeddings(run, name, embeddings[rows], labels[rows], rows)
    curve = {"cutoff": test.curve_cutoffs.tolist(), "precision": test.curve_precision.tolist(),
             "recall": test.curve_recall.tolist()}
    return {**test.metrics, "distance": cfg.distance}, curve


def _code_results(run: Path, relaxed: np.ndarray, labels: LabelSet, splits: Splits,
                  cfg: EvalConfig) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Binary codes sign(relaxed): tie-aware metrics on the codes, ``codes/*.npz`` (packed
    ``codes``, ``y``, ``bits``, ``index``, and ``relaxed``: the ``(N, K)`` outputs before
    the sign as float16, which order Hamming ties where results are shown,
    :mod:`deephash.index.rerank`) and the PR curve over Hamming radius."""
    bits = relaxed.shape[1]
    codes = HammingDistance().codes(relaxed)
    test = evaluate_codes(codes[splits.query], codes[splits.database], labels[splits.query],
                          labels[splits.database], bits, evaluation_spec(cfg),
                          query_ids=splits.query, database_ids=splits.database,
                          index_order=True)
    for name, rows in (("query", splits.query), ("database", splits.database)):
        save_npz(run / "codes" / f"{name}.npz", codes=codes[rows], y=labels[rows].as_array(),
                 bits=np.array(bits), index=rows,
                 relaxed=np.asarray(relaxed[rows], dtype=np.float16))
    curve = {"radius": list(range(bits + 1)), "precision": test.radius_precision.tolist(),
             "recall": test.radius_recall.tolist()}
    return {**test.metrics, "distance": HammingDistance.name, "bits": bits}, curve


def write_results(run: Path, embeddings: np.ndarray, dataset: ImageDataset, splits: Splits,
                  cfg: EvalConfig, seed: int, title: str,
                  extra_metrics: dict[str, Any] | None = None,
                  codes: bool = False) -> dict[str, Any]:
    """Test-protocol metrics, vectors, PR curve and t-SNE into ``run``.

    ``embeddings`` are pool-indexed ``(N, D)``; with ``codes`` they are relaxed codes,
    evaluated as their signs (Hamming distance, tie-aware) and saved packed. Besides the
    retrieval metrics, ``triplet_acc`` and ``pair_auc`` on fixed, seeded triplets and pairs
    of the queries (:mod:`deephash.metrics.verification`); the protocol's headline cut-off
    joins ``cfg.map_cutoffs`` (:func:`~deephash.pipeline.protocol.protocol_evaluation`).
    Returns the dict written to ``metrics.json``; logs the headline test figures as one
    line (:func:`~deephash.metrics.names.headline`), the last of ``baseline``, ``train``
    and each code length of ``hash``.
    """
    labels = dataset.labels
    cfg = protocol_evaluation(cfg, splits)
    metric = scoring_distance(cfg.distance, codes)
    evaluate = _code_results if metric.binary else _float_results
    measured, curve = evaluate(run, embeddings, labels, splits, cfg)
    verification = verification_metrics(embeddings[splits.query], labels[splits.query],
                                        metric, seed)
    metrics: dict[str, Any] = {**measured, **verification, "protocol": splits.protocol,
                               "n_query": len(splits.query), "n_database": len(splits.database),
                               **(extra_metrics or {})}
    save_json(run / "pr_curve.json", curve)
    plot_pr_curve(np.asarray(curve["recall"]), np.asarray(curve["precision"]),
                  run / "pr_curve.png", f"{title}: precision-recall ({measured['distance']})")
    if cfg.tsne_points > 0:
        query_x = embeddings[splits.query]
        if metric.normalizes:  # t-SNE of the directions the distance compares
            query_x = query_x / np.maximum(np.linalg.norm(query_x, axis=1, keepdims=True), 1e-12)
        tsne_plot(query_x, labels[splits.query], dataset.classes, run / "tsne.png",
                  n_points=cfg.tsne_points, seed=seed,
                  title=f"{title}: query {'relaxed codes' if codes else 'embeddings'}")
    save_json(run / "metrics.json", metrics)
    log.info("%s: test %s (%s, %s queries, %s distance)", run,
             headline(metrics, splits.map_cutoff), splits.protocol, f"{len(splits.query):,}",
             metrics["distance"])
    return metrics
