"""Distance-weighted sampling (Wu, Manmatha, Smola & Krähenbühl, ICCV 2017)."""

from __future__ import annotations

import torch

from deephash.errors import ConfigError
from deephash.miners.base import Miner, MiningBatch, Triplets, label_masks


class DistanceWeightedMiner(Miner):
    """For each anchor-positive pair, a negative drawn with probability proportional to
    ``1 / q(d)``, where q(d) ∝ d^(n-2) (1 - d^2/4)^((n-3)/2) is the density of distances
    between points uniform on the unit sphere in n dimensions.

    Distances are clipped below at ``cutoff`` (variance control, 0.5 in the paper) and
    negatives at or beyond ``nonzero_loss_cutoff`` get weight 0 (they cannot violate the
    margin). Needs L2-normalised embeddings and Euclidean distances. Memory O(B^2): each
    anchor draws all the negatives its pairs need at once.
    """

    name = "distance-weighted"

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
                 seed: int = 0) -> None:
        self.cutoff = cutoff
        self.nonzero_loss_cutoff = nonzero_loss_cutoff
        self.generator = torch.Generator().manual_seed(seed)

    def mine(self, batch: MiningBatch) -> Triplets:
        embeddings = batch.embeddings
        norms = embeddings.norm(dim=1)
        if len(norms) and not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            raise ConfigError("distance-weighted sampling needs L2-normalised embeddings "
                              "(use --normalize with the euclidean distance)")
        positive, negative = label_masks(batch.labels)
        n = embeddings.shape[1]
        d = batch.distances.clamp(min=self.cutoff, max=2.0 - 1e-4)
        log_weight = -(n - 2.0) * torch.log(d) - (n - 3.0) / 2.0 * torch.log1p(-0.25 * d * d)
        allowed = negative & (batch.distances < self.nonzero_loss_cutoff)
        log_weight = log_weight.masked_fill(~allowed, float("-inf"))
        usable = allowed.any(dim=1)
        pairs_per_anchor = positive.sum(dim=1)
        need = int(pairs_per_anchor.max()) if len(pairs_per_anchor) else 0
        anchor, pos = torch.nonzero(positive & usable[:, None], as_tuple=True)
        if anchor.numel() == 0 or need == 0:
            return Triplets.empty(d.device)
        rows = torch.nonzero(usable).flatten()
        weight = torch.softmax(log_weight[rows].double(), dim=1)  # max-subtracted, stable
        draws = torch.multinomial(weight.cpu(), need, replacement=True,
                                  generator=self.generator).to(d.device)
        row_of = torch.full((len(usable),), -1, dtype=torch.long, device=d.device)
        row_of[rows] = torch.arange(len(rows), device=d.device)
        rank = torch.cumsum(positive.long(), dim=1) - 1  # pair number within its anchor
        return Triplets(anchor, pos, draws[row_of[anchor], rank[anchor, pos]])

