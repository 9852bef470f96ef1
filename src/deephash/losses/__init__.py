"""Triplet, pair and classification losses behind one registry: ``create_loss(name, ...)``."""

from __future__ import annotations

from dataclasses import dataclass

from deephash.errors import ConfigError
from deephash.losses.base import BatchLoss, LossOutput, TripletLoss, reduce
from deephash.losses.contrastive import ContrastiveLoss, pairs_of
from deephash.losses.distances import BATCH_DISTANCES, BatchDistance
from deephash.losses.dtsh import DTSHLoss
from deephash.losses.facenet import FaceNetLoss
from deephash.losses.hoffer import HofferAilonLoss
from deephash.losses.softmax import SoftmaxLoss
from deephash.miners import miner_names
from deephash.registries import LOSSES


@dataclass(frozen=True)
class LossSettings:
    """What a loss factory may use; ``num_classes`` and ``embedding_dim`` size the
    classifier of the softmax loss."""

    margin: float
    distance: BatchDistance
    reduction: str
    num_classes: int
    embedding_dim: int


# the factories of LOSSES (deephash.registries): build_<name>(settings)
def build_facenet(s: LossSettings) -> BatchLoss:
    return FaceNetLoss(s.margin, s.distance, s.reduction)


def build_hoffer(s: LossSettings) -> BatchLoss:
    return HofferAilonLoss(s.margin, s.distance, s.reduction)


def build_contrastive(s: LossSettings) -> BatchLoss:
    return ContrastiveLoss(s.margin, s.distance, s.reduction)


def build_dtsh(s: LossSettings) -> BatchLoss:
    return DTSHLoss(s.margin, s.distance, s.reduction)


def build_softmax(s: LossSettings) -> BatchLoss:
    return SoftmaxLoss(s.embedding_dim, s.num_classes, s.reduction)


def create_loss(name: str, margin: float, distance: str = "euclidean", reduction: str = "mean",
                num_classes: int = 0, embedding_dim: int = 0) -> BatchLoss:
    """A registered loss composed with a registered distance (``BATCH_DISTANCES``).

    The metric losses ignore ``num_classes`` and ``embedding_dim``; the softmax loss needs
    them (the data set's classes, the embedding's width) and ignores ``margin`` and
    ``distance``.
    """
    settings = LossSettings(margin, BATCH_DISTANCES.create(distance), reduction, num_classes,
                            embedding_dim)
    return LOSSES.create(name, settings)


@dataclass(frozen=True)
class LossTraits:
    """What a loss is, without building it for a data set: it has a margin to select and
    schedule; it consumes mined tuples; the tuple kinds (``Miner.yields``) it trains on."""

    uses_margin: bool
    uses_miner: bool
    accepts: tuple[str, ...]


def miners_for(loss_name: str) -> tuple[str, ...]:
    """Every registered miner whose tuples (triplets or pairs) the loss trains on."""
    traits = loss_traits(loss_name)
    if not traits.uses_miner:
        raise ConfigError(f"the {loss_name} loss uses no miner; a miner study needs a loss "
                          "that does")
    return tuple(sorted(name for kind in traits.accepts for name in miner_names(kind)))


def loss_traits(name: str) -> LossTraits:
    """The traits of a registered loss (``ConfigError`` for an unknown name)."""
    probe = create_loss(name, 0.0, num_classes=2, embedding_dim=1)  # shapes irrelevant here
    return LossTraits(probe.uses_margin, probe.uses_miner, probe.accepts)


__all__ = ["BATCH_DISTANCES", "LOSSES", "BatchDistance", "BatchLoss", "ContrastiveLoss",
           "DTSHLoss", "FaceNetLoss", "HofferAilonLoss", "LossOutput", "LossSettings",
           "LossTraits", "SoftmaxLoss", "TripletLoss", "create_loss", "loss_traits", "pairs_of",
           "reduce"]
