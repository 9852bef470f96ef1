"""The loss contract: per-triplet (or per-pair) values from a distance matrix, then a reduction.

``forward(distances, triplets)`` takes the batch's differentiable ``(B, B)`` distance
matrix (from ``loss.distance``) and a miner's :class:`~deephash.miners.Triplets`; a
subclass only implements ``per_item``. An empty set of triplets gives a zero loss that is
still connected to the graph (its gradient is zero), so an unlucky batch never breaks
training, and ``LossOutput.n_items == 0`` lets the trainer count it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.distances import BatchDistance
from deephash.miners.base import Triplets

REDUCTIONS = ("mean", "mean_active", "sum")


@dataclass
class LossOutput:
    """The reduced loss and per-batch diagnostics (plain floats, detached)."""

    loss: torch.Tensor
    n_items: int
    n_active: int
    mean_positive_distance: float
    mean_negative_distance: float

    @property
    def active_fraction(self) -> float:
        return self.n_active / self.n_items if self.n_items else 0.0


def reduce(values: torch.Tensor, how: str) -> torch.Tensor:
    """``mean`` over all items, ``mean_active`` over items with a non-zero loss (Hermans
    et al.'s batch-all average), or ``sum``. ``values`` is non-empty."""
    if how == "mean":
        return values.mean()
    if how == "sum":
        return values.sum()
    active = (values > 0).sum()
    return values.sum() / active.clamp_min(1)


class TripletLoss(nn.Module):
    """Base: composes a :class:`BatchDistance` and a reduction."""

    name = "base"
    uses_margin = True

    def __init__(self, distance: BatchDistance, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
        self.distance = distance
        self.reduction = reduction

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        """``(T,)`` anchor-positive and anchor-negative distances -> ``(T,)`` losses."""
        raise NotImplementedError

    def forward(self, distances: torch.Tensor, triplets: Triplets) -> LossOutput:
        if len(triplets) == 0:
            return LossOutput(distances.sum() * 0.0, 0, 0, float("nan"), float("nan"))
        d_ap = distances[triplets.anchor, triplets.positive]
        d_an = distances[triplets.anchor, triplets.negative]
        values = self.per_item(d_ap, d_an)
        with torch.no_grad():
            stats = (int((values > 0).sum()), float(d_ap.mean()), float(d_an.mean()))
        return LossOutput(reduce(values, self.reduction), len(triplets), *stats)


class MarginLoss(TripletLoss):
    """Base of the losses with a margin (settable during training by a schedule)."""

    def __init__(self, margin: float, distance: BatchDistance, reduction: str = "mean") -> None:
        super().__init__(distance, reduction)
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}, reduction={self.reduction}"
