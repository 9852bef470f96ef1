"""The loss contract: a batch's embeddings and labels in, a reduced loss and diagnostics out.

The trainer calls ``loss.compute(embeddings, labels, miner)`` (:class:`BatchLoss`). The
metric losses (:class:`TripletLoss`) compute the batch's differentiable ``(B, B)``
distance matrix (``loss.distance``), let the miner choose tuples on its detached copy,
and ``forward(distances, mined)`` turns them into per-item values and a reduction; a
subclass only implements ``per_item``. An empty set of tuples gives a zero loss that is
still connected to the graph (its gradient is zero), so an unlucky batch never breaks
training, and ``LossOutput.n_items == 0`` lets the trainer count it. Losses that need no
miner (the softmax classifier) implement ``compute`` directly; losses with parameters of
their own (its class weights) are trained and checkpointed with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.distances import BatchDistance
from deephash.miners.base import Mined, Miner, MiningBatch, Triplets
from deephash.registries import REDUCTIONS


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


class BatchLoss(nn.Module):
    """Base of every loss: ``compute(embeddings, labels, miner) -> LossOutput``.

    ``uses_margin``: has a margin to select and schedule; ``uses_miner``: consumes mined
    tuples; ``accepts``: the kinds of tuples (``Miner.yields``) it trains on.
    """

    name = "base"
    uses_margin = False
    uses_miner = True
    accepts: tuple[str, ...] = ("triplets",)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor,
                miner: Miner) -> LossOutput:
        """``(B, D)`` float32 embeddings and ``(B,)`` int64 labels -> the batch's loss."""
        raise NotImplementedError

    def check_miner(self, miner: Miner) -> None:
        """Refuse a miner whose tuples this loss does not train on (``ConfigError``)."""
        if self.uses_miner and miner.yields not in self.accepts:
            raise ConfigError(f"miner {miner.name!r} yields {miner.yields}; the {self.name} "
                              f"loss trains on {' or '.join(self.accepts)}")


class TripletLoss(BatchLoss):
    """Base of the metric losses: composes a :class:`BatchDistance` and a reduction."""

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

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor,
                miner: Miner) -> LossOutput:
        self.check_miner(miner)
        distances = self.distance.matrix(embeddings)
        mined = miner.mine(MiningBatch(distances.detach(), labels, embeddings.detach()))
        return self(distances, mined)

    def forward(self, distances: torch.Tensor, triplets: Mined) -> LossOutput:
        if not isinstance(triplets, Triplets):
            raise ConfigError(f"the {self.name} loss trains on triplets, not pairs")
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
