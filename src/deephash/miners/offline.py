"""The offline miners: the pre-formed tuples of an offline batch, read back by position.

Pair with :class:`deephash.training.offline.OfflineSampler`, whose batches hold
``[anchors | positives | negatives]`` (triplets) or ``[firsts | seconds]`` (pairs); any
loss then trains on them unchanged.
"""

from __future__ import annotations

import torch

from deephash.data.tuples import check_tuple_size
from deephash.miners.base import Miner, MiningBatch, Pairs, Triplets, label_masks


class OfflineMiner(Miner):
    """Reads the block layout of an offline batch of ``tuple_size`` (3 or 2) blocks.

    Triplets: position ``i`` of the first third, ``i + T`` and ``i + 2T`` form triplet ``i``
    (``T = B // 3``). Like every miner it returns only valid triplets: positions that do
    not form one (a batch from another sampler, a degenerate batch) are left out, so such a
    batch counts as empty rather than training on wrong labels.

    Pairs: positions ``i`` and ``i + P`` form pair ``i`` (``P = B // 2``); ``same`` comes
    from the labels, so any two positions make a valid pair.

    Validity and ``same`` are read from :func:`~deephash.miners.base.label_masks` (a
    positive shares a label, a negative shares none), for id and multi-hot labels alike.
    """

    tuple_size: int

    def __init__(self, tuple_size: int = 3) -> None:
        check_tuple_size(tuple_size)
        self.tuple_size = tuple_size
        self.yields = "triplets" if tuple_size == 3 else "pairs"
        self.name = "offline" if tuple_size == 3 else "offline-pairs"

    def mine(self, batch: MiningBatch) -> Triplets | Pairs:
        labels = batch.labels
        t = len(labels) // self.tuple_size
        rows = torch.arange(t, device=labels.device)
        positive, negative = label_masks(labels)
        if self.tuple_size == 2:
            return Pairs(rows, rows + t, positive[rows, rows + t])
        rows = rows[positive[rows, rows + t] & negative[rows, rows + 2 * t]]
        return Triplets(rows, rows + t, rows + 2 * t)

    def __repr__(self) -> str:
        return f"OfflineMiner(tuple_size={self.tuple_size})"
