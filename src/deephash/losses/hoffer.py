"""The loss of Hoffer & Ailon, "Deep metric learning using triplet network" (2015)."""

from __future__ import annotations

import torch

from deephash.losses.base import TripletLoss


class HofferAilonLoss(TripletLoss):
    """Softmax over the two distances, then squared error against (0, 1).

    d+ = e^d(a,p) / (e^d(a,p) + e^d(a,n)), d- = e^d(a,n) / (...), loss = d+^2 + (d- - 1)^2
    (= 2 d+^2). d+ = sigmoid(d(a,p) - d(a,n)) computes it without overflow. There is no
    margin in the formula; the loss pushes the ratio, not a gap, so it is never exactly
    zero. It holds the training's margin for its miner (semi-hard, random-hard, ...).
    """

    name = "hoffer"
    uses_margin = False

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        d_plus = torch.sigmoid(d_ap - d_an)
        d_minus = torch.sigmoid(d_an - d_ap)
        return d_plus.square() + (d_minus - 1.0).square()
