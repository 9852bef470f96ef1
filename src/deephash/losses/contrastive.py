"""Contrastive loss over pairs (Hadsell, Chopra & LeCun, CVPR 2006)."""

from __future__ import annotations

import torch

from deephash.losses.base import LossOutput, TripletLoss, reduce
from deephash.miners.base import Mined, Pairs, Triplets


def pairs_of(triplets: Triplets) -> Pairs:
    """The distinct anchor-positive and anchor-negative pairs of mined triplets.

    Every triplet miner thus serves the contrastive loss too. Pairs come out ordered
    ``(anchor, other)`` as mined, each once.
    """
    first = torch.cat([triplets.anchor, triplets.anchor])
    second = torch.cat([triplets.positive, triplets.negative])
    size = int(torch.cat([first, second]).max()) + 1 if len(first) else 1
    key = torch.unique(first * size + second)
    first, second = key // size, key % size
    # a pair is positive iff it came from a positive slot (labels decide; no pair is both)
    positive_keys = torch.unique(triplets.anchor * size + triplets.positive)
    return Pairs(first, second, torch.isin(key, positive_keys))


class ContrastiveLoss(TripletLoss):
    """same: d^2 / 2;  different: max(0, margin - d)^2 / 2, on mined pairs.

    Trains on a pair miner's pairs, or on the distinct pairs of a triplet miner's triplets
    (:func:`pairs_of`; PML's ``convert_to_pairs`` keeps a pair once per triplet instead).
    ``loss(embeddings, labels)`` scores every pair of the batch.
    """

    name = "contrastive"
    accepts = ("triplets", "pairs")

    def score(self, distances: torch.Tensor, mined: Mined) -> LossOutput:
        pairs = pairs_of(mined) if isinstance(mined, Triplets) else mined
        if len(pairs) == 0:
            return LossOutput(distances.sum() * 0.0, 0, 0, float("nan"), float("nan"))
        same = pairs.same
        d = distances[pairs.first, pairs.second]
        values = torch.where(same, 0.5 * d.square(), 0.5 * torch.relu(self.margin - d).square())
        with torch.no_grad():
            stats = (int((values > 0).sum()), _mean(d[same]), _mean(d[~same]))
        return LossOutput(reduce(values, self.reduction), len(values), *stats)


def _mean(values: torch.Tensor) -> float:
    """The mean, NaN for no values (a batch of only positive or only negative pairs)."""
    return float(values.mean()) if values.numel() else float("nan")
