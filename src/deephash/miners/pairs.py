"""Online pair selection for the contrastive loss (Hadsell, Chopra & LeCun 2006).

Pairs are unordered: each is reported once as ``first < second`` (every distance here is
symmetric). Two selections, one parametrised miner:

============ ======================= ===============================================
miner        positive pairs          negative pairs
============ ======================= ===============================================
all-pairs    every relevant pair     every irrelevant pair
hard-pairs   every relevant pair     the nearest ones, as many as there are positive
                                     pairs (ties: the pair that comes first in row-major
                                     order, i.e. smaller ``first``, then smaller ``second``)
============ ======================= ===============================================

A batch with no positive pair gets no hard negative either (nothing to balance against);
``all-pairs`` then still yields its negative pairs. A pair is relevant when its images
share a label, irrelevant when they share none (:func:`deephash.miners.base.label_masks`),
so single- and multi-label batches are mined alike.
"""

from __future__ import annotations

import torch

from deephash.errors import ConfigError
from deephash.miners.base import Miner, MiningBatch, Pairs, label_masks

NEGATIVE_SELECTIONS = ("all", "hard")


def nearest(d: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest of ``d`` ``(n,)``, ties to the smaller index, in the
    order of a stable sort — its first ``k`` entries, found with a k-th value and a sort of
    the ``k`` chosen only (O(n + k log k) instead of O(n log n))."""
    if k >= len(d):
        return torch.sort(d, stable=True).indices
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=d.device)
    threshold = torch.kthvalue(d, k).values
    below = torch.nonzero(d < threshold).flatten()
    tied = torch.nonzero(d == threshold).flatten()[: k - len(below)]
    chosen = torch.cat([below, tied])  # ascending index within each part
    return chosen[torch.sort(d[chosen], stable=True).indices]  # sort k items, not n


class PairMiner(Miner):
    """All positive pairs and ``negatives`` (``all`` or ``hard``) negative pairs.

    Memory and time O(B^2) (hard negatives: a k-th value, no full sort).
    """

    yields = "pairs"

    def __init__(self, negatives: str) -> None:
        if negatives not in NEGATIVE_SELECTIONS:
            raise ConfigError(f"unknown negative selection {negatives!r}; "
                              f"known: {', '.join(NEGATIVE_SELECTIONS)}")
        self.negatives = negatives
        self.name = f"{negatives}-pairs"

    def mine(self, batch: MiningBatch) -> Pairs:
        labels = batch.labels
        upper = torch.ones(len(labels), len(labels), dtype=torch.bool,
                           device=labels.device).triu(diagonal=1)
        positive, negative = label_masks(labels)
        pos_first, pos_second = torch.nonzero(positive & upper, as_tuple=True)
        neg_first, neg_second = torch.nonzero(negative & upper, as_tuple=True)  # row-major
        if self.negatives == "hard":
            keep = nearest(batch.distances[neg_first, neg_second], len(pos_first))
            neg_first, neg_second = neg_first[keep], neg_second[keep]
        first = torch.cat([pos_first, neg_first])
        second = torch.cat([pos_second, neg_second])
        is_same = torch.cat([torch.ones_like(pos_first, dtype=torch.bool),
                             torch.zeros_like(neg_first, dtype=torch.bool)])
        return Pairs(first, second, is_same)

    def __repr__(self) -> str:
        return f"PairMiner(negatives={self.negatives!r})"
