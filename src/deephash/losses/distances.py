"""Differentiable batch distances for training (losses and miners share them).

``matrix(x)`` gives the ``(B, B)`` distances of a batch to itself. The Euclidean square
root has an unbounded derivative at zero; here the derivative at exactly coinciding
points is 0 (sub-gradient), so two equal embeddings never produce NaN or inf gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deephash.registries import BATCH_DISTANCES


class BatchDistance:
    """Base: ``matrix(x: (B, D)) -> (B, B)`` distances; the diagonal is exactly 0."""

    name = "base"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _squared_euclidean(x: torch.Tensor) -> torch.Tensor:
    norms = (x * x).sum(dim=1)
    squared = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    squared = squared.clamp_min(0.0)
    return squared * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


class EuclideanDistance(BatchDistance):
    """||x_i - x_j||."""

    name = "euclidean"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        squared = _squared_euclidean(x)
        positive = squared > 0
        # sqrt only where the argument is positive: finite gradients at coinciding points
        return torch.where(positive, squared.where(positive, 1.0).sqrt(), 0.0)


class SquaredEuclideanDistance(BatchDistance):
    """||x_i - x_j||^2."""

    name = "sqeuclidean"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        return _squared_euclidean(x)


class CosineDistance(BatchDistance):
    """1 - cos(x_i, x_j), in [0, 2]."""

    name = "cosine"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(x, dim=1)
        cos = (unit @ unit.T).clamp(-1.0, 1.0)
        return (1.0 - cos) * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


class NegativeHalfInnerProduct(BatchDistance):
    """-θ with θ_ij = x_i·x_j / 2, DTSH's pairwise score (Wang et al. 2016) turned into a
    dissimilarity (larger = farther) so that miners and losses can use it. Not a metric;
    the diagonal is set to 0 like the others (no loss uses it)."""

    name = "neg-half-inner"

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        scores = -0.5 * (x @ x.T)
        return scores * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


__all__ = ["BATCH_DISTANCES", "BatchDistance", "CosineDistance", "EuclideanDistance",
           "NegativeHalfInnerProduct", "SquaredEuclideanDistance"]
