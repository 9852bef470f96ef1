"""Retrieval and kNN metrics: exact, vectorised, chunked, ties broken by database index
(float distances) or averaged over (Hamming distances of codes: tie-aware,
:mod:`deephash.metrics.evaluate_codes`)."""

from deephash.metrics.evaluate import EvaluationSpec, RetrievalReport, evaluate_retrieval
from deephash.metrics.scores import mean_average_precision, precision_at_k

__all__ = ["EvaluationSpec", "RetrievalReport", "evaluate_retrieval", "mean_average_precision",
           "precision_at_k"]
