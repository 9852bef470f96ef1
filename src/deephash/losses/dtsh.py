"""DTSH: Deep supervised hashing with triplet labels (Wang, Shi & Kitani, ACCV 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deephash.losses.base import TripletLoss


class DTSHLoss(TripletLoss):
    """Negative log-likelihood of the triplet labels under θ_ij = u_i·u_j / 2:

        -log σ(θ_ap - θ_an - α) = softplus(θ_an - θ_ap + α) = softplus(d_ap - d_an + α)

    with d = -θ (``neg-half-inner``). ``softplus`` is linear for large arguments, so the
    loss is finite for any θ. The paper's quantisation term λ·||u - sign(u)||² is a
    separate, schedulable regulariser (:mod:`deephash.hashing.regularizers`).
    """

    name = "dtsh"

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        return F.softplus(d_ap - d_an + self.margin)
