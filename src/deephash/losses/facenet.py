"""FaceNet's triplet margin loss (Schroff, Kalenichenko & Philbin, CVPR 2015)."""

from __future__ import annotations

import torch

from deephash.losses.base import TripletLoss


class FaceNetLoss(TripletLoss):
    """max(0, d(a,p) - d(a,n) + margin) per triplet.

    The paper uses squared Euclidean distances of L2-normalised embeddings; any
    :class:`BatchDistance` may be composed in.
    """

    name = "facenet"

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        return torch.relu(d_ap - d_an + self.margin)
