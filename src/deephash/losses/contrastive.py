"""Contrastive loss over pairs (Hadsell, Chopra & LeCun, CVPR 2006)."""

from __future__ import annotations

import torch

from deephash.losses.base import LossOutput, MarginLoss, reduce
from deephash.miners.base import Triplets


def pairs_of(triplets: Triplets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct anchor-positive and anchor-negative pairs of mined triplets.

    Returns ``(first, second, same)``: ``(M,)`` indices and a bool ``(M,)`` that is True
    for positive pairs. Every miner thus serves the contrastive loss too.
    """
    first = torch.cat([triplets.anchor, triplets.anchor])
    second = torch.cat([triplets.positive, triplets.negative])
    size = int(torch.cat([first, second]).max()) + 1 if len(first) else 1
    key = torch.unique(first * size + second)
    first, second = key // size, key % size
    # a pair is positive iff it came from a positive slot (labels decide; no pair is both)
    positive_keys = torch.unique(triplets.anchor * size + triplets.positive)
    return first, second, torch.isin(key, positive_keys)


class ContrastiveLoss(MarginLoss):
    """same: d^2 / 2;  different: max(0, margin - d)^2 / 2, on the mined pairs."""

    name = "contrastive"

    def forward(self, distances: torch.Tensor, triplets: Triplets) -> LossOutput:
        if len(triplets) == 0:
            return LossOutput(distances.sum() * 0.0, 0, 0, float("nan"), float("nan"))
        first, second, same = pairs_of(triplets)
        d = distances[first, second]
        values = torch.where(same, 0.5 * d.square(), 0.5 * torch.relu(self.margin - d).square())
        with torch.no_grad():
            stats = (int((values > 0).sum()), float(d[same].mean()), float(d[~same].mean()))
        return LossOutput(reduce(values, self.reduction), len(values), *stats)
