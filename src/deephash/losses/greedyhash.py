"""GreedyHash (Su, Zhang, Han & Tian, "Greedy Hash: Towards Fast Optimization for Accurate
Hash Coding in CNN", NeurIPS 2018).

The hash layer takes the sign of the network's output h in the forward pass, b = sgn(h),
and passes the gradient to h unchanged in the backward pass (the straight-through
estimator that follows from solving the sign greedily in each step;
:func:`deephash.hashing.codes.straight_through_sign`). A linear classifier W (K -> C, no
bias, trained and checkpointed with the loss) reads the binary code, and per image

    L = CE(W b, y)  +  α (1/K) Σ_k ||h_k| - 1|³

the cross-entropy of the class logits, plus the paper's ‖h - sgn(h)‖₃³ penalty that keeps
h near ±1 so that the straight-through gradient stays accurate
(:func:`deephash.hashing.regularizers.quantization_error` with power 3, per bit as in
DeepHash-pytorch). On multi-label data the cross-entropy becomes the mean over the C
classes of the binary cross-entropy of sigmoid(W b) against the 0/1 targets (as the
classifier of :mod:`deephash.losses.softmax`). The batch's loss is the mean over images
(``reduction``). α (``penalty_weight``, default 0.1, DeepHash-pytorch's on CIFAR-10) is the
main hyper-parameter (``--loss-options alpha=VALUE``). The head outputs h itself
(activation ``none``): the loss needs it
for the penalty, and sgn(h) gives the same codes at evaluation.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from deephash.hashing.codes import straight_through_sign
from deephash.hashing.regularizers import quantization_error
from deephash.losses.class_codes import ClassCodeLoss
from deephash.losses.options import LossOption

#: GreedyHash's α (DeepHash-pytorch's configuration for CIFAR-10)
DEFAULT_ALPHA = 0.1


class GreedyHashLoss(ClassCodeLoss):
    """A classifier on straight-through sign codes plus the cubic penalty (see the module
    docstring)."""

    name = "greedyhash"
    options = MappingProxyType({"alpha": LossOption("penalty_weight", DEFAULT_ALPHA,
                                   "weight of the cubic penalty ||h| - 1|³")})

    def __init__(self, num_classes: int, bits: int, penalty_weight: float = DEFAULT_ALPHA,
                 reduction: str = "mean") -> None:
        super().__init__(num_classes, bits, reduction)
        self.penalty_weight = float(penalty_weight)
        self.classifier = nn.Linear(bits, num_classes, bias=False)

    def per_item(self, codes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(straight_through_sign(codes))
        if labels.dim() == 1:
            fit = F.cross_entropy(logits, labels, reduction="none")
        else:
            fit = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), reduction="none").mean(dim=1)
        penalty = quantization_error(codes, power=3) / self.bits
        return fit + self.penalty_weight * penalty, logits.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.penalty_weight}"


__all__ = ["DEFAULT_ALPHA", "GreedyHashLoss"]
