"""The ``offline`` miner: the pre-formed triplets of an offline batch, read back by position.

Pairs with :class:`deephash.training.offline.OfflineTripletSampler`, whose batches hold
``[anchors | positives | negatives]``; any triplet loss then trains on them unchanged.
"""

from __future__ import annotations

import torch

from deephash.miners.base import MiningBatch, TripletMiner, Triplets


class OfflineMiner(TripletMiner):
    """Reads the ``[anchors | positives | negatives]`` layout of an offline batch.

    Position ``i`` of the first third, ``i + T`` and ``i + 2T`` form triplet ``i``
    (``T = B // 3``). Like every miner it returns only valid triplets: positions that do
    not form one (a batch from another sampler, a degenerate batch) are left out, so such a
    batch counts as empty rather than training on wrong labels.
    """

    name = "offline"

    def mine(self, batch: MiningBatch) -> Triplets:
        t = len(batch.labels) // 3
        rows = torch.arange(t, device=batch.labels.device)
        labels = batch.labels
        valid = (labels[rows] == labels[rows + t]) & (labels[rows] != labels[rows + 2 * t])
        rows = rows[valid]
        return Triplets(rows, rows + t, rows + 2 * t)
