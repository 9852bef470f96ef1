"""FaceNet's triplet margin loss (Schroff, Kalenichenko & Philbin, CVPR 2015)."""

from __future__ import annotations

import torch

from deephash.losses.base import TripletLoss
from deephash.losses.distances import BatchDistance


class FaceNetLoss(TripletLoss):
    """max(0, d(a,p) - d(a,n) + margin) per triplet.

    The paper uses squared Euclidean distances of L2-normalised embeddings; any
    :class:`BatchDistance` may be composed in.
    """

    name = "facenet"

    def __init__(self, margin: float, distance: BatchDistance, reduction: str = "mean") -> None:
        super().__init__(distance, reduction)
        self.margin = float(margin)

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        return torch.relu(d_ap - d_an + self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}, reduction={self.reduction}"
