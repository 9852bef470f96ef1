"""OrthoHash (Hoe, Ng, Zhang, Chan, Song & Xiang, "One Loss for All: Deep Hashing with a
Single Cosine Similarity based Learning Objective", NeurIPS 2021).

Every class c has a fixed binary code w_c in {-1, +1}^K, its bits drawn from
Bernoulli(0.5) (the paper's and the authors' default codebook, nearly orthogonal for large
K; :func:`deephash.hashing.centres.bernoulli_centres`, seeded, a buffer saved with the
checkpoint's loss state). The continuous code v (the head's output, no activation) is
scored by its cosine similarity to each class code, made a margin-scaled logit:

    z_c = s (cos(v, w_c) - m [c ∈ y])

Single label y: the cross-entropy L = -log softmax(z)_y. Multi-label (the paper's form, the
authors' default ``label_smoothing``): the cross-entropy against the label set spread
evenly over its classes, L = -Σ_c (y_c / |y|) log softmax(z)_c. The batch's loss is the mean
over images (``reduction``). s (``scale``, default 8) and m (``margin``, default 0.2) are
the main hyper-parameters (``--loss-options s=VALUE m=VALUE``; the authors' defaults;
their README suggests m = 0.3 on
CIFAR-10). Maximising cos(v, w_y) pulls sign(v) to w_y and |v_k| to a common size at once:
the paper's point is that no separate quantisation term is needed.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F

from deephash.hashing.centres import bernoulli_centres
from deephash.losses.class_codes import ClassCodeLoss
from deephash.losses.options import LossOption

#: OrthoHash's s and m (the authors' defaults)
DEFAULT_SCALE = 8.0
DEFAULT_MARGIN = 0.2


class OrthoHashLoss(ClassCodeLoss):
    """Cross-entropy of margin-scaled cosine similarities to fixed class codes (see the
    module docstring)."""

    name = "orthohash"
    options = MappingProxyType({
        "s": LossOption("scale", DEFAULT_SCALE, "scale of the cosine logits", open_low=True),
        "m": LossOption("margin", DEFAULT_MARGIN, "margin subtracted from the cosine to the "
                        "image's own class codes", high=2.0)})

    def __init__(self, num_classes: int, bits: int, scale: float = DEFAULT_SCALE,
                 margin: float = DEFAULT_MARGIN, reduction: str = "mean", seed: int = 0) -> None:
        super().__init__(num_classes, bits, reduction)
        self.scale = float(scale)
        self.margin = float(margin)
        self.codebook: torch.Tensor
        self.register_buffer("codebook", bernoulli_centres(num_classes, bits, seed))

    def per_item(self, codes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cosine = F.normalize(codes, dim=1) @ F.normalize(self.codebook, dim=1).T  # (B, C)
        hot = (F.one_hot(labels, self.num_classes) if labels.dim() == 1 else labels)
        hot = hot.to(cosine.dtype)
        log_p = F.log_softmax(self.scale * (cosine - self.margin * hot), dim=1)
        spread = hot / hot.sum(dim=1, keepdim=True).clamp_min(1)
        return -(spread * log_p).sum(dim=1), cosine.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, s={self.scale}, m={self.margin}"


__all__ = ["DEFAULT_MARGIN", "DEFAULT_SCALE", "OrthoHashLoss"]
