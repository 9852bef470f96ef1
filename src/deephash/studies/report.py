"""Evaluating pool embeddings and writing a run's results, now in
:mod:`deephash.pipeline.results`; re-exported here under their old names."""

from deephash.pipeline.results import (
    evaluate_split,
    evaluation_spec,
    validation_report,
    write_embeddings,
    write_results,
)

__all__ = ["evaluate_split", "evaluation_spec", "validation_report", "write_embeddings",
           "write_results"]
