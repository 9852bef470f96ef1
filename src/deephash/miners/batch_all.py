"""Batch-all: every valid triplet of the batch (Hermans et al. 2017, "batch all")."""

from __future__ import annotations

import torch

from deephash.miners.base import Miner, MiningBatch, Triplets, index_table, label_masks


class BatchAllMiner(Miner):
    """All ordered (a, p, n): a != p share a label, n shares none with a.

    A single-label P x K batch gives P*K*(K-1)*(P-1)*K triplets, in (anchor, positive,
    negative) order. Each anchor's positives and negatives are listed in padded
    ``(B, K_p)`` and ``(B, K_n)`` tables; the triplets are their per-anchor outer product,
    written out directly (a single-label balanced batch has no padding, so this is three
    broadcast copies) instead of the ``(B, B, B)`` mask a naive version builds.
    """

    name = "batch-all"

    def mine(self, batch: MiningBatch) -> Triplets:
        positive, negative = label_masks(batch.labels)
        pos_table, pos_valid = index_table(positive)
        neg_table, neg_valid = index_table(negative)
        n_anchors, k_pos, k_neg = len(batch.labels), pos_table.shape[1], neg_table.shape[1]
        if k_pos == 0 or k_neg == 0:
            return Triplets.empty(batch.labels.device)
        shape = (n_anchors, k_pos, k_neg)
        anchors = torch.arange(n_anchors, device=pos_table.device)[:, None, None].expand(shape)
        positives = pos_table[:, :, None].expand(shape)
        negatives = neg_table[:, None, :].expand(shape)
        if bool(pos_valid.all()) and bool(neg_valid.all()):
            return Triplets(anchors.reshape(-1), positives.reshape(-1), negatives.reshape(-1))
        valid = pos_valid[:, :, None] & neg_valid[:, None, :]
        return Triplets(anchors[valid], positives[valid], negatives[valid])
