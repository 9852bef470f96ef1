"""Batch-all: every valid triplet of the batch (Hermans et al. 2017, "batch all")."""

from __future__ import annotations

import torch

from deephash.miners.base import MiningBatch, TripletMiner, Triplets, label_masks


class BatchAllMiner(TripletMiner):
    """All ordered (a, p, n): a != p share a label, n has another label.

    A P x K batch gives P*K*(K-1)*(P-1)*K triplets, in (anchor, positive, negative) order.
    They are generated from the anchor-positive pairs and each anchor's negatives directly,
    in O(T) time and memory, without the ``(B, B, B)`` mask a naive version builds.
    """

    name = "batch-all"

    def mine(self, batch: MiningBatch) -> Triplets:
        positive, negative = label_masks(batch.labels)
        anchor_of_pair, positive_of_pair = positive.nonzero(as_tuple=True)
        _, neg_index = negative.nonzero(as_tuple=True)  # grouped by anchor, ascending
        neg_count = negative.sum(dim=1)
        neg_start = torch.cumsum(neg_count, 0) - neg_count
        repeats = neg_count[anchor_of_pair]
        total = int(repeats.sum())
        if total == 0:
            return Triplets.empty(batch.labels.device)
        pair = torch.repeat_interleave(torch.arange(len(anchor_of_pair), device=repeats.device),
                                       repeats, output_size=total)
        first_of_pair = torch.cumsum(repeats, 0) - repeats
        offset = torch.arange(total, device=repeats.device) - first_of_pair[pair]
        anchors = anchor_of_pair[pair]
        return Triplets(anchors, positive_of_pair[pair], neg_index[neg_start[anchors] + offset])
