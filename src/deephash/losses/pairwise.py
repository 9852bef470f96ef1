"""Losses over all pairs of a batch (DPSH, HashNet, DSH): no miner, every pair scored.

A :class:`PairwiseLoss` takes the batch's ``(B, K)`` relaxed codes and its labels (``(B,)``
int64 class ids or ``(B, C)`` bool multi-hot rows) and forms every ordered pair ``(i, j)``,
``i != j``: ``B (B - 1)`` pairs, each unordered pair twice, which leaves every mean as it is.
Two images are similar (``s_ij = 1``) when they share a label
(:func:`deephash.labels.batch_relevance`, the field's definition), so every pairwise
method trains on single- and multi-label data alike. The loss is

    L = Σ_(i,j) w_ij ℓ_ij / |P|  +  R(u)

with the method's pair loss ``ℓ_ij`` (:meth:`PairwiseLoss.pair_losses`), its pair weights
``w_ij`` (1 unless the method weighs them, :meth:`PairwiseLoss.pair_weights`) and its term
on the codes ``R`` (:meth:`PairwiseLoss.codes_term`, already divided by ``|P|`` where the
paper sums it with the pairs). A batch without a pair (one image) gives a zero loss that
is still connected to the graph, and ``LossOutput.n_items == 0``. The normalisation is
the papers' (``--reduction`` does not apply), and each formula fixes its own comparison
of codes (``--train-distance`` does not apply). Diagnostics: ``n_active`` counts the
pairs with a non-zero loss, the mean distances are Euclidean between the codes of the
similar and of the dissimilar pairs (NaN where the batch has none).
"""

from __future__ import annotations

import torch

from deephash.labels import batch_relevance
from deephash.losses.base import BatchLoss, LossOutput


def _mean_or_nan(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


class PairwiseLoss(BatchLoss):
    """Base of the pairwise hashing losses; a subclass implements :meth:`pair_losses` and,
    where its paper has them, :meth:`pair_weights` and :meth:`codes_term`."""

    uses_miner = False
    accepts = ()
    every_pair = True

    def pair_losses(self, codes: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` codes and ``(B, B)`` 0/1 similarity (float) -> ``(B, B)`` ``ℓ_ij``
        (the diagonal is ignored)."""
        raise NotImplementedError

    def pair_weights(self, similar: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """``(B, B)`` bool similarity and pair mask -> ``(B, B)`` weights ``w_ij`` (used
        on ``pairs`` only): 1 by default."""
        return pairs.to(torch.float32)

    def codes_term(self, codes: torch.Tensor, n_pairs: int) -> torch.Tensor:
        """The paper's term on the ``(B, K)`` codes themselves, in the units of the mean
        pair loss; none by default."""
        return codes.sum() * 0.0

    def transform(self, outputs: torch.Tensor) -> torch.Tensor:
        """The head's ``(B, K)`` outputs -> the codes the pairs compare (themselves, unless
        the method relaxes them itself, as HashNet's continuation does)."""
        return outputs

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """``(B, K)`` relaxed codes and ``(B,)`` ids or ``(B, C)`` multi-hot labels -> the
        loss of all ``B (B - 1)`` ordered pairs (see the module docstring)."""
        codes = self.transform(embeddings)
        n = len(codes)
        similar = batch_relevance(labels)
        pairs = ~torch.eye(n, dtype=torch.bool, device=codes.device)
        n_pairs = n * (n - 1)
        if n_pairs == 0:
            return LossOutput(codes.sum() * 0.0, 0, 0, float("nan"), float("nan"))
        values = self.pair_losses(codes, similar.to(codes.dtype))
        weights = self.pair_weights(similar, pairs).to(codes.dtype)
        loss = (weights * values)[pairs].sum() / n_pairs + self.codes_term(codes, n_pairs)
        with torch.no_grad():
            distances = torch.cdist(codes, codes)
            stats = (int((values[pairs] > 0).sum()), _mean_or_nan(distances[pairs & similar]),
                     _mean_or_nan(distances[pairs & ~similar]))
        return LossOutput(loss, n_pairs, *stats)
