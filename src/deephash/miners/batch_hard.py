"""Batch-hard: per anchor, the farthest positive and the nearest negative (Hermans et al. 2017)."""

from __future__ import annotations

import torch

from deephash.miners.base import Miner, MiningBatch, Triplets, label_masks


class BatchHardMiner(Miner):
    """One triplet per anchor that has both a positive and a negative in the batch.

    Ties pick the smallest batch index. Memory O(B^2).
    """

    name = "batch-hard"

    def mine(self, batch: MiningBatch) -> Triplets:
        positive, negative = label_masks(batch.labels)
        anchors = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
        if anchors.numel() == 0:
            return Triplets.empty(batch.labels.device)
        d = batch.distances[anchors]
        hardest_positive = d.masked_fill(~positive[anchors], float("-inf")).argmax(dim=1)
        hardest_negative = d.masked_fill(~negative[anchors], float("inf")).argmin(dim=1)
        return Triplets(anchors, hardest_positive, hardest_negative)
