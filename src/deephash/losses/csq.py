"""CSQ: Central Similarity Quantization (Yuan, Wang, Zhang, Tay, Jie, Liu & Feng, "Central
Similarity Quantization for Efficient Image and Video Retrieval", CVPR 2020).

Every class c has a fixed *hash centre* c_c in {-1, +1}^K, rows of a Hadamard matrix
(K a power of two, C <= 2K) or else seeded Bernoulli(0.5) bits
(:func:`deephash.hashing.centres.hadamard_centres`). An image's target centre t is its
class's; for a label set, the sign of the mean of its classes' centres, a tie taking a
fixed random bit (:func:`~deephash.hashing.centres.label_set_centres`). With the relaxed
code h = tanh(·) in (-1, 1)^K (the head's ``tanh`` activation), per image:

    L = (1/K) Σ_k BCE((h_k + 1)/2, (t_k + 1)/2)  +  λ (1/K) Σ_k (|h_k| - 1)²

with BCE(p, y) = -[y log p + (1 - y) log(1 - p)]; the batch's loss is the mean over images
(``reduction``). λ (``quantization_weight``, default 1e-4 as in DeepHash-pytorch's CSQ) is
the main hyper-parameter (``--loss-options lambda=VALUE``). The quantisation term is
the paper's Q with the squared gap of
both reference implementations (the paper writes log cosh(|h_k| - 1), a smooth |·|), i.e.
:func:`deephash.hashing.regularizers.quantization_error` / K. The centres and the tie
code are buffers drawn from ``seed``, saved with the checkpoint's loss state.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F

from deephash.hashing.centres import bernoulli_centres, hadamard_centres, label_set_centres
from deephash.hashing.regularizers import quantization_error
from deephash.losses.class_codes import ClassCodeLoss
from deephash.losses.options import LossOption

#: CSQ's λ (DeepHash-pytorch's CSQ configuration)
DEFAULT_LAMBDA = 1e-4


class CSQLoss(ClassCodeLoss):
    """Codes pulled to their class's hash centre (see the module docstring)."""

    name = "csq"
    activations = ("tanh",)  # codes in (-1, 1): (h + 1) / 2 is a probability
    options = MappingProxyType({"lambda": LossOption("quantization_weight", DEFAULT_LAMBDA,
                                    "weight of the quantisation term")})

    def __init__(self, num_classes: int, bits: int, quantization_weight: float = DEFAULT_LAMBDA,
                 reduction: str = "mean", seed: int = 0) -> None:
        super().__init__(num_classes, bits, reduction)
        self.quantization_weight = float(quantization_weight)
        self.centres: torch.Tensor
        self.tie_break: torch.Tensor
        self.register_buffer("centres", hadamard_centres(num_classes, bits, seed))
        self.register_buffer("tie_break", bernoulli_centres(1, bits, seed + 1)[0])

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ids or ``(B, C)`` multi-hot rows -> ``(B, K)`` ±1 target centres."""
        return label_set_centres(self.centres, labels, self.tie_break)

    def per_item(self, codes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = (self.targets(labels) + 1) / 2
        central = F.binary_cross_entropy((codes + 1) / 2, target, reduction="none").mean(dim=1)
        values = central + self.quantization_weight * quantization_error(codes) / self.bits
        return values, codes.detach() @ self.centres.T

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda={self.quantization_weight}"


__all__ = ["DEFAULT_LAMBDA", "CSQLoss"]
