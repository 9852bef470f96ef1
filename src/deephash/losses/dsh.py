"""DSH: Liu, Wang, Shan & Chen, "Deep Supervised Hashing for Fast Image Retrieval",
CVPR 2016."""

from __future__ import annotations

from types import MappingProxyType

import torch

from deephash.errors import ConfigError
from deephash.losses.options import LossOption
from deephash.losses.pairwise import PairwiseLoss

#: α, the weight of the regulariser that pulls every output towards ±1 (the paper's)
DSH_ALPHA = 0.01


class DSHLoss(PairwiseLoss):
    """The contrastive loss of relaxed codes plus an L1 pull towards ±1, per pair:

        L(b_i, b_j, y) = ½ (1 - y) ||b_i - b_j||² + ½ y max(m - ||b_i - b_j||², 0)
                         + α (|| |b_i| - 1 ||₁ + || |b_j| - 1 ||₁),

    with ``y = 0`` for a similar pair (``s_ij = 1``), ``y = 1`` otherwise; the mean over the
    batch's ordered pairs. Each image is in ``2 (B - 1)`` of the ``B (B - 1)`` pairs, so
    the α term is ``2 α`` times the batch mean of ``|| |b_i| - 1 ||₁``. ``b`` are the head's
    linear outputs ``(B, K)`` (no tanh, as in the paper). Main hyper-parameters: the margin
    m (``--margin``; the ``dsh`` method sets 2K, :func:`deephash.training.methods.dsh_method`)
    and α (default :data:`DSH_ALPHA`;
    ``--loss-options alpha=VALUE``).
    """

    name = "dsh"
    uses_margin = True
    options = MappingProxyType({
        "alpha": LossOption("alpha", DSH_ALPHA, "weight of the pull towards ±1")})

    def __init__(self, margin: float, alpha: float = DSH_ALPHA) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ConfigError(f"DSH's α must be a number >= 0, got {alpha:g}")
        self.margin = float(margin)
        self.alpha = float(alpha)

    def pair_losses(self, codes: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        norms = codes.square().sum(dim=1)
        squared = (norms[:, None] + norms[None, :] - 2 * codes @ codes.T).clamp_min(0)
        return 0.5 * similar * squared + 0.5 * (1 - similar) * (self.margin - squared).clamp_min(0)

    def codes_term(self, codes: torch.Tensor, n_pairs: int) -> torch.Tensor:
        return 2 * self.alpha * (codes.abs() - 1).abs().sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin:g}, alpha={self.alpha:g}"
