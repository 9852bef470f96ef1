"""Evaluate pool embeddings on a protocol and write the run folder's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deephash.data import ImageDataset, Splits
from deephash.fileio import save_json
from deephash.metrics import EvaluationSpec, RetrievalReport, evaluate_retrieval
from deephash.studies.baseline_config import EvalConfig
from deephash.studies.run_folder import write_embeddings
from deephash.viz.curves import plot_pr_curve
from deephash.viz.tsne import tsne_plot


def evaluation_spec(cfg: EvalConfig) -> EvaluationSpec:
    return EvaluationSpec(knn_k=cfg.knn_k, map_cutoffs=cfg.map_cutoffs,
                          precision_k=cfg.precision_k)


def evaluate_split(embeddings: np.ndarray, labels: np.ndarray, queries: np.ndarray,
                   database: np.ndarray, cfg: EvalConfig) -> RetrievalReport:
    """Metrics of pool rows ``queries`` against pool rows ``database``.

    Pool indices serve as identities, so a query never retrieves itself.
    """
    return evaluate_retrieval(embeddings[queries], embeddings[database], labels[queries],
                              labels[database], cfg.distance, evaluation_spec(cfg),
                              query_ids=queries, database_ids=database)


def validation_report(embeddings: np.ndarray, labels: np.ndarray, splits: Splits,
                      cfg: EvalConfig) -> RetrievalReport:
    """Model-selection metrics: validation queries against the training part."""
    return evaluate_split(embeddings, labels, splits.val, splits.train, cfg)


def write_results(run: Path, embeddings: np.ndarray, dataset: ImageDataset, splits: Splits,
                  cfg: EvalConfig, seed: int, title: str,
                  extra_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test-protocol metrics, embeddings, PR curve and t-SNE into ``run``.

    Returns the dict written to ``metrics.json``.
    """
    labels = dataset.labels
    test = evaluate_split(embeddings, labels, splits.query, splits.database, cfg)
    metrics: dict[str, Any] = {**test.metrics, "distance": cfg.distance,
                               "protocol": splits.protocol, "n_query": len(splits.query),
                               "n_database": len(splits.database), **(extra_metrics or {})}
    for name, rows in (("query", splits.query), ("database", splits.database)):
        write_embeddings(run, name, embeddings[rows], labels[rows], rows)
    save_json(run / "pr_curve.json", {"cutoff": test.curve_cutoffs.tolist(),
                                      "precision": test.curve_precision.tolist(),
                                      "recall": test.curve_recall.tolist()})
    plot_pr_curve(test.curve_recall, test.curve_precision, run / "pr_curve.png",
                  f"{title}: precision-recall ({cfg.distance})")
    if cfg.tsne_points > 0:
        query_x = embeddings[splits.query]
        if cfg.distance == "cosine":
            query_x = query_x / np.maximum(np.linalg.norm(query_x, axis=1, keepdims=True), 1e-12)
        tsne_plot(query_x, labels[splits.query], dataset.classes, run / "tsne.png",
                  n_points=cfg.tsne_points, seed=seed, title=f"{title}: query embeddings")
    save_json(run / "metrics.json", metrics)
    return metrics
