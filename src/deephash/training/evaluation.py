"""Embedding a setup's images, and the validation score that selects the best epoch.

The best epoch is the one of the highest validation mAP@all, which every label set has;
the validation 10-NN accuracy beside it exists on single-label data only (the metrics
leave ``knn_acc@k`` out on multi-label data, :mod:`deephash.metrics.evaluate`) and is NaN
otherwise. Under torchrun each rank embeds its share of the images and every rank gets
them all; rank 0 scores validation and broadcasts the figures.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from deephash.distances import Distance, as_distance
from deephash.distributed import broadcast, gather_rows, ranks
from deephash.labels import LabelsLike
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.training.model import EmbeddingModel
from deephash.training.setup import Inputs, TrainingSetup

VALIDATION_SPEC = EvaluationSpec(knn_k=(10,), map_cutoffs=(), precision_k=())


@torch.no_grad()
def embed(model: EmbeddingModel, inputs: Inputs, indices: np.ndarray, device: torch.device,
          batch_size: int = 1024, test_time_flip: bool = False,
          across_ranks: bool = True) -> np.ndarray:
    """``(len(indices), embedding_dim)`` float32 embeddings in eval mode.

    ``test_time_flip``: the mean of each image's embedding and its mirror image's (for codes,
    the mean of the relaxed outputs, binarised afterwards). Across ranks, each embeds its
    share of ``indices`` and every rank gets them all (every rank must call);
    ``across_ranks=False``: this process embeds them all, alone.
    """
    if not across_ranks:
        return _embed_local(model, inputs, indices, device, batch_size, test_time_flip)
    mine = _embed_local(model, inputs, ranks().take(indices), device, batch_size,
                        test_time_flip)
    return gather_rows(mine, len(indices))


def _embed_local(model: EmbeddingModel, inputs: Inputs, indices: np.ndarray,
                 device: torch.device, batch_size: int, test_time_flip: bool) -> np.ndarray:
    model.eval()
    views = (False, True) if test_time_flip else (False,)
    total = None
    for mirrored in views:
        parts = [model(x.to(device)).float().cpu()
                 for x in inputs.eval_batches(indices, batch_size, mirrored=mirrored)]
        vectors = torch.cat(parts) if parts else torch.zeros((0, model.head.out_dim))
        total = vectors if total is None else total + vectors
    assert total is not None
    return (total / len(views)).numpy()


def validation_scores(val: np.ndarray, train: np.ndarray, val_labels: LabelsLike,
                      train_labels: LabelsLike,
                      distance: str | Distance) -> tuple[float, float]:
    """(mAP@all, kNN@10) of ``(V, D)`` validation vectors against ``(T, D)`` training
    vectors; a binary distance (``hamming``) scores the vectors' sign codes. Labels are
    ``(N,)`` ids, label sets or multi-hot matrices; kNN@10 is NaN on multi-label data."""
    metric = as_distance(distance)
    if metric.binary:  # hashing is scored on the sign codes
        metrics = evaluate_codes(metric.codes(val), metric.codes(train),
                                 val_labels, train_labels, val.shape[1],
                                 VALIDATION_SPEC).metrics
    else:
        metrics = evaluate_retrieval(val, train, val_labels, train_labels, metric.name,
                                     VALIDATION_SPEC).metrics
    return metrics["map@all"], metrics.get("knn_acc@10", math.nan)


def validate(setup: TrainingSetup) -> tuple[float, float]:
    """(mAP@all, kNN@10) of validation queries against the training part (scored by rank
    0, the same figures on every rank)."""
    both = np.concatenate([setup.val, setup.train])
    vectors = embed(setup.model, setup.inputs, both, setup.device, setup.eval_batch_size,
                    setup.test_time_flip)
    scores = None
    if ranks().main:
        scores = validation_scores(vectors[: len(setup.val)], vectors[len(setup.val):],
                                   setup.labels[setup.val], setup.labels[setup.train],
                                   setup.eval_distance)
    return broadcast(scores)
