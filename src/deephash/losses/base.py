"""The loss contract: a batch in, a reduced loss and diagnostics (:class:`LossOutput`) out.

A loss never calls a miner. A metric loss (:class:`TripletLoss`) scores tuples that the
trainer mined (:func:`batch_loss`): the trainer computes the batch's differentiable
``(B, B)`` distance matrix with the loss's ``distance``, the miner chooses tuples on its
detached copy with the loss's margin (``MiningBatch.margin``), and
``loss.score(distances, mined)`` turns them into per-item values and a reduction; a
subclass only implements ``per_item``. The margin thus lives once, on the loss, where a
schedule sets it. An empty set of tuples gives a zero loss that is still connected to the
graph (its gradient is zero), so an unlucky batch never breaks training, and
``LossOutput.n_items == 0`` lets the trainer count it. A loss that mines nothing (the
softmax classifier, the class-code and pairwise hashing losses, ``uses_miner = False``)
scores ``compute(embeddings, labels)`` directly; losses with parameters of their own (its
class weights) are trained and checkpointed with the model.

Every loss is also called as pytorch-metric-learning's are (:meth:`BatchLoss.forward`):
``loss(embeddings, labels, indices_tuple=None)`` is the batch's reduced loss, a scalar
tensor. A metric loss scores the given PML index tuple (a miner's,
:mod:`deephash.miners.indices`), or without one every valid tuple of the batch (every
triplet; every pair for a pair loss), as PML's losses do; a loss that mines nothing
scores the batch and takes no tuple. ``loss.output(...)`` is the same with the
:class:`LossOutput` diagnostics. The trainer's form, ``loss(distances, mined)`` with
mined :class:`~deephash.miners.base.Triplets` or :class:`~deephash.miners.base.Pairs`,
is :meth:`BatchLoss.score`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.distances import BATCH_DISTANCES, BatchDistance
from deephash.losses.options import LossOption
from deephash.miners.base import Mined, Miner, MiningBatch, Pairs, Triplets, check_batch
from deephash.miners.batch_all import BatchAllMiner
from deephash.miners.indices import IndicesTuple, from_indices_tuple, triplets_of
from deephash.miners.pairs import PairMiner
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
    """Base of every loss: its traits, and the check that a miner's tuples suit it.

    ``uses_margin``: its formula has a margin (``margin``) to select and schedule;
    ``uses_miner``: consumes mined tuples (a :class:`TripletLoss`); ``accepts``: the kinds
    of tuples (``Miner.yields``) it trains on; ``activations``: the head activations whose
    outputs its formula is defined on (empty: any); ``every_pair``: scores every pair of the
    batch itself, without a miner (the pairwise hashing methods, DPSH, HashNet, DSH);
    ``options``: its own hyper-parameters that ``--loss-options NAME=VALUE`` sets
    (:mod:`deephash.losses.options`; none by default).
    """

    name = "base"
    uses_margin = False
    uses_miner = True
    accepts: tuple[str, ...] = ("triplets",)
    activations: tuple[str, ...] = ()
    margin = math.nan  # the formula's margin, where ``uses_margin``
    every_pair = False
    class_codes = False  # scored against one fixed target per class (CSQ, OrthoHash, ...)
    options: ClassVar[Mapping[str, LossOption]] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | Mined,
                indices_tuple: IndicesTuple | None = None) -> torch.Tensor | LossOutput:
        """PML's call: ``loss(embeddings, labels, indices_tuple=None)``, ``(B, D)``
        embeddings and their labels (``(B,)`` int64 class ids or ``(B, C)`` bool multi-hot
        rows) -> the batch's reduced loss, a scalar tensor (:meth:`output` says what is
        scored). The trainer's call, ``loss(distances, mined)`` with mined ``Triplets`` or
        ``Pairs``, is :meth:`score` and returns its :class:`LossOutput`."""
        if isinstance(labels, (Triplets, Pairs)):
            return self.score(embeddings, labels)
        return self.output(embeddings, labels, indices_tuple).loss

    def output(self, embeddings: torch.Tensor, labels: torch.Tensor,
               indices_tuple: IndicesTuple | None = None) -> LossOutput:
        """The loss of PML's call with its diagnostics. A loss that mines nothing scores
        the whole batch (:meth:`compute`) and refuses an ``indices_tuple``."""
        embeddings, labels = check_batch(embeddings, labels)
        if indices_tuple is not None:
            raise ConfigError(f"the {self.name} loss scores every image of the batch and takes "
                              "no indices_tuple; call it as loss(embeddings, labels)")
        return self.compute(embeddings, labels)

    def score(self, distances: torch.Tensor, mined: Mined) -> LossOutput:
        """A metric loss: ``(B, B)`` differentiable distances and mined tuples -> the
        batch's loss (:meth:`TripletLoss.score`)."""
        raise ConfigError(f"the {self.name} loss scores whole batches, not mined tuples; call "
                          "it as loss(embeddings, labels)")

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """A loss that mines nothing (``uses_miner = False``): the loss of ``(B, D)``
        embeddings and their labels, ``(B,)`` int64 class ids or ``(B, C)`` bool multi-hot
        rows. A metric loss scores mined tuples instead (:meth:`TripletLoss.score`)."""
        raise NotImplementedError(f"the {self.name} loss scores mined tuples, not embeddings")

    def check_miner(self, miner: Miner) -> None:
        """Refuse a miner whose tuples this loss does not train on (``ConfigError``)."""
        if self.uses_miner and miner.yields not in self.accepts:
            raise ConfigError(f"miner {miner.name!r} yields {miner.yields}; the {self.name} "
                              f"loss trains on {' or '.join(self.accepts)}")


class TripletLoss(BatchLoss):
    """Base of the metric losses: composes a :class:`BatchDistance`, a reduction and the
    training's margin.

    ``margin`` is the one margin of a training run: the formula's (FaceNet, contrastive,
    DTSH) and the one the trainer hands the miner at mining time; a schedule sets it here.
    A loss whose formula has none (``uses_margin = False``, Hoffer & Ailon's) still holds
    it for its margin-aware miner.
    """

    uses_margin = True

    def __init__(self, margin: float, distance: BatchDistance | str = "euclidean",
                 reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
        self.margin = float(margin)
        self.distance = BATCH_DISTANCES.create(distance) if isinstance(distance, str) else distance
        self.reduction = reduction

    def per_item(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        """``(T,)`` anchor-positive and anchor-negative distances -> ``(T,)`` losses."""
        raise NotImplementedError

    def all_tuples(self) -> Miner:
        """What ``loss(embeddings, labels)`` scores without an ``indices_tuple``, as PML's
        losses do: every valid pair for a loss that trains on pairs, else every valid
        triplet."""
        return PairMiner("all") if "pairs" in self.accepts else BatchAllMiner()

    def output(self, embeddings: torch.Tensor, labels: torch.Tensor,
               indices_tuple: IndicesTuple | None = None) -> LossOutput:
        """The loss of PML's call with its diagnostics: of the ``indices_tuple``'s triplets
        or pairs (a triplet loss given pairs scores their triplets, as PML's
        ``convert_to_triplets`` forms them, :func:`~deephash.miners.indices.triplets_of`),
        or without one of :meth:`all_tuples`'s."""
        embeddings, labels = check_batch(embeddings, labels)
        if indices_tuple is None:
            return batch_loss(self, self.all_tuples(), embeddings, labels)
        mined = from_indices_tuple(indices_tuple, len(embeddings), embeddings.device)
        if isinstance(mined, Pairs) and "pairs" not in self.accepts:
            mined = triplets_of(mined)
        return self.score(self.distance.matrix(embeddings), mined)

    def score(self, distances: torch.Tensor, mined: Mined) -> LossOutput:
        """``(B, B)`` differentiable distances and mined triplets -> the batch's loss."""
        if not isinstance(mined, Triplets):
            raise ConfigError(f"the {self.name} loss trains on triplets; a pair miner's pairs "
                              "need a pair loss (contrastive)")
        if len(mined) == 0:
            return LossOutput(distances.sum() * 0.0, 0, 0, float("nan"), float("nan"))
        d_ap = distances[mined.anchor, mined.positive]
        d_an = distances[mined.anchor, mined.negative]
        values = self.per_item(d_ap, d_an)
        with torch.no_grad():
            stats = (int((values > 0).sum()), float(d_ap.mean()), float(d_an.mean()))
        return LossOutput(reduce(values, self.reduction), len(mined), *stats)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}, reduction={self.reduction}"


def batch_loss(loss: BatchLoss, miner: Miner, embeddings: torch.Tensor,
               labels: torch.Tensor) -> LossOutput:
    """The loss of one batch of ``(B, D)`` embeddings and its labels, ``(B,)`` int64 class
    ids or ``(B, C)`` bool multi-hot rows, as the trainer computes it.

    A metric loss: its differentiable ``(B, B)`` distance matrix, the miner's tuples chosen
    on the detached copy with the loss's margin, then the loss of those tuples. A loss
    that mines nothing (softmax, class-code, pairwise) scores the embeddings directly and
    ignores the miner.
    """
    if not isinstance(loss, TripletLoss):
        return loss.compute(embeddings, labels)
    loss.check_miner(miner)
    distances = loss.distance.matrix(embeddings)
    mined = miner.mine(MiningBatch(distances.detach(), labels, embeddings.detach(),
                                   loss.margin))
    return loss.score(distances, mined)
