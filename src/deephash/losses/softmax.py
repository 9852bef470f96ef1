"""The classification baseline: a softmax classifier on the embedding, cross-entropy.

The embedding head's output (L2-normalised or not, as configured) is the classifier's
input, so the embedding is the network's penultimate layer and is evaluated with the
same retrieval metrics as every metric loss. The class weights are parameters of the loss:
the trainer optimises and checkpoints them with the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.base import REDUCTIONS, BatchLoss, LossOutput, reduce


class SoftmaxLoss(BatchLoss):
    """Cross-entropy of ``Linear(embedding_dim, num_classes)`` logits.

    ``LossOutput.n_active`` counts the batch's misclassified items (its ``active_fraction``
    is the training error); the distance statistics are NaN (no pairs are formed).
    Cross-entropy is never exactly zero, so ``mean_active`` is ``mean``.
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
        """``(B, D)`` embeddings and ``(B,)`` int64 labels -> the batch's loss."""
        logits = self.classifier(embeddings)
        values = F.cross_entropy(logits, labels, reduction="none")
        with torch.no_grad():
            wrong = int((logits.argmax(dim=1) != labels).sum())
        return LossOutput(reduce(values, self.reduction), len(values), wrong, float("nan"),
                          float("nan"))

    @torch.no_grad()
    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` embeddings -> ``(B,)`` predicted classes."""
        return self.classifier(embeddings).argmax(dim=1)
