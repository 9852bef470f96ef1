"""Retrieval and kNN metrics: exact, vectorised, chunked, ties broken by database index."""

from deephash.metrics.evaluate import EvaluationSpec, RetrievalReport, evaluate_retrieval

__all__ = ["EvaluationSpec", "RetrievalReport", "evaluate_retrieval"]
