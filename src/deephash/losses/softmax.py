"""The classification baseline: a softmax classifier on the embedding, cross-entropy.

The embedding head's output (L2-normalised or not, as configured) is the classifier's
input, so the embedding is the network's penultimate layer and is evaluated with the
same retrieval metrics as every metric loss. The class weights are parameters of the loss:
the trainer optimises and checkpoints them with the model.

On multi-label data (``(B, C)`` multi-hot labels) the same linear layer is read as C
independent sigmoid classifiers trained with binary cross-entropy on the multi-hot targets
(the multi-label classifier of the field); on single-label data (``(B,)`` class ids) it is
the softmax and cross-entropy it always was. The label tensor's form decides, and the
trainer passes the data set's form for every batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deephash.errors import ConfigError
from deephash.labels import LabelsLike, as_label_set
from deephash.losses.base import REDUCTIONS, BatchLoss, LossOutput, reduce
from deephash.losses.class_codes import top_class_hits


class SoftmaxLoss(BatchLoss):
    """Cross-entropy of ``Linear(embedding_dim, num_classes)`` logits; binary
    cross-entropy of their sigmoids on multi-hot labels (see the module docstring).

    ``LossOutput.n_active`` counts the batch's misclassified items, those whose top-scoring
    class is not one of their labels (its ``active_fraction`` is the training error); the
    distance statistics are NaN (no pairs are formed). Neither cross-entropy is ever
    exactly zero, so ``mean_active`` is ``mean``.
    """

    name = "softmax"
    uses_miner = False
    accepts = ()

    def __init__(self, embedding_dim: int, num_classes: int, reduction: str = "mean") -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"a softmax classifier needs two classes or more, not {num_classes}")
        if embedding_dim < 1:
            raise ConfigError("a softmax classifier needs the embedding's width (embedding_dim)")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.reduction = reduction

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """``(B, D)`` embeddings and ``(B,)`` int64 class ids (cross-entropy) or ``(B, C)``
        bool multi-hot rows (per item: the mean over the C classes of the binary
        cross-entropy of ``sigmoid(logit)`` against the 0/1 target) -> the batch's loss."""
        logits = self.classifier(embeddings)
        if labels.dim() == 1:
            values = F.cross_entropy(logits, labels, reduction="none")
        else:
            if labels.shape[1] != logits.shape[1]:
                raise ConfigError(f"multi-hot labels of {labels.shape[1]} classes for a "
                                  f"classifier of {logits.shape[1]}")
            values = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), reduction="none").mean(dim=1)
        with torch.no_grad():
            wrong = len(values) - int(top_class_hits(logits.argmax(dim=1), labels).sum())
        return LossOutput(reduce(values, self.reduction), len(values), wrong, float("nan"),
                          float("nan"))

    @torch.no_grad()
    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` embeddings -> ``(B,)`` predicted classes (the top-scoring one)."""
        return self.classifier(embeddings).argmax(dim=1)

    def accuracy(self, embeddings: torch.Tensor, labels: LabelsLike) -> float:
        """The fraction of ``(B, D)`` embeddings whose predicted class is one of their
        labels (``(B,)`` ids, a :class:`~deephash.labels.LabelSet` or a multi-hot matrix):
        accuracy on single-label data, top-1 precision of the classes on multi-label data;
        an unlabelled image counts as missed."""
        label_set = as_label_set(labels)
        predicted = self.predict(embeddings).cpu().numpy()
        if label_set.is_single:
            return float((predicted == label_set.ids).mean())
        return float(label_set.multi_hot[np.arange(len(predicted)), predicted].mean())

