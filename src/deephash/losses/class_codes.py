"""The base of the losses that learn codes against class targets (CSQ, OrthoHash,
GreedyHash): no miner, the whole batch of ``(B, K)`` codes and its labels scored at once.

A subclass computes, for ``(B, K)`` codes and labels (``(B,)`` int64 class ids or
``(B, C)`` bool multi-hot rows), the ``(B,)`` per-image losses and ``(B, C)`` class scores
(:meth:`ClassCodeLoss.per_item`); the base checks the labels against the number of
classes, reduces (:func:`~deephash.losses.base.reduce`) and reports as
``LossOutput.n_active`` the batch's misclassified images, those whose top-scoring class is
not one of their labels (:func:`top_class_hits`). No pairs are formed, so the distance
statistics are NaN. Class codes the loss holds (CSQ's centres, OrthoHash's codebook) are
buffers, saved in the checkpoint's ``"loss"`` state with any weights (GreedyHash's
classifier).
"""

from __future__ import annotations

import torch

from deephash.errors import ConfigError
from deephash.losses.base import REDUCTIONS, BatchLoss, LossOutput, reduce


def top_class_hits(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the predicted class is one of the item's labels (``(B,)`` ids or
    ``(B, C)`` multi-hot rows)."""
    if labels.dim() == 1:
        return predicted == labels
    return labels.gather(1, predicted[:, None]).squeeze(1).bool()


class ClassCodeLoss(BatchLoss):
    """Codes scored against ``num_classes`` class targets (see the module docstring)."""

    uses_miner = False
    accepts = ()
    class_codes = True

    def __init__(self, num_classes: int, bits: int, reduction: str = "mean") -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"the {self.name} loss needs two classes or more, not "
                              f"{num_classes}")
        if bits < 1:
            raise ConfigError(f"the {self.name} loss needs the code length (embedding_dim)")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
        self.num_classes = num_classes
        self.bits = bits
        self.reduction = reduction

    def per_item(self, codes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, K)`` codes and labels -> ``(B,)`` losses and ``(B, C)`` class scores."""
        raise NotImplementedError

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """``(B, K)`` codes and ``(B,)`` int64 ids or ``(B, C)`` bool multi-hot rows ->
        the batch's loss."""
        if embeddings.shape[1] != self.bits:
            raise ConfigError(f"{embeddings.shape[1]}-dimensional codes for a {self.name} loss "
                              f"of {self.bits} bits")
        if labels.dim() == 2 and labels.shape[1] != self.num_classes:
            raise ConfigError(f"multi-hot labels of {labels.shape[1]} classes for a "
                              f"{self.name} loss of {self.num_classes}")
        values, scores = self.per_item(embeddings, labels)
        with torch.no_grad():
            wrong = len(values) - int(top_class_hits(scores.argmax(dim=1), labels).sum())
        return LossOutput(reduce(values, self.reduction), len(values), wrong, float("nan"),
                          float("nan"))

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, bits={self.bits}, reduction={self.reduction}"


__all__ = ["ClassCodeLoss", "top_class_hits"]
