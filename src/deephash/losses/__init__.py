"""Triplet, pair and classification losses behind one registry: ``create_loss(name, ...)``.

Every loss is called as pytorch-metric-learning's are, ``loss(embeddings, labels,
indices_tuple=None)`` (:mod:`deephash.losses.base`); :func:`batch_loss` is the trainer's
one call with a miner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deephash.errors import ConfigError
from deephash.losses.base import BatchLoss, LossOutput, TripletLoss, batch_loss, reduce
from deephash.losses.contrastive import ContrastiveLoss, pairs_of
from deephash.losses.csq import CSQLoss
from deephash.losses.distances import BATCH_DISTANCES, BatchDistance
from deephash.losses.dpsh import DPSHLoss
from deephash.losses.dsh import DSHLoss
from deephash.losses.dtsh import DTSHLoss
from deephash.losses.facenet import FaceNetLoss
from deephash.losses.greedyhash import GreedyHashLoss
from deephash.losses.hashnet import HASHNET_ALPHA_BITS, HashNetLoss
from deephash.losses.hoffer import HofferAilonLoss
from deephash.losses.options import LossOption, describe_options, parse_loss_options
from deephash.losses.orthohash import OrthoHashLoss
from deephash.losses.softmax import SoftmaxLoss
from deephash.miners import miner_names
from deephash.registries import LOSSES


@dataclass(frozen=True)
class LossSettings:
    """What a loss factory may use; ``num_classes`` and ``embedding_dim`` size the
    classifier of the softmax loss and the class codes; ``options`` are the
    ``--loss-options`` entries (``NAME=VALUE``) for the loss's own hyper-parameters."""

    margin: float
    distance: BatchDistance
    reduction: str
    num_classes: int
    embedding_dim: int
    options: tuple[str, ...] = ()

    def chosen(self, loss: type[BatchLoss]) -> dict[str, Any]:
        """The ``options`` given for ``loss`` as its constructor's keyword arguments
        (:func:`~deephash.losses.options.parse_loss_options`; the rest keep their
        defaults)."""
        return parse_loss_options(loss.name, loss.options, self.options)


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


# the class-code methods: their papers' defaults (λ, s and m, α in their modules) unless
# --loss-options sets them; the codes are embedding_dim bits; margin and distance are not
# theirs
def build_csq(s: LossSettings) -> BatchLoss:
    return CSQLoss(s.num_classes, s.embedding_dim, reduction=s.reduction, **s.chosen(CSQLoss))


def build_orthohash(s: LossSettings) -> BatchLoss:
    return OrthoHashLoss(s.num_classes, s.embedding_dim, reduction=s.reduction,
                         **s.chosen(OrthoHashLoss))


def build_greedyhash(s: LossSettings) -> BatchLoss:
    return GreedyHashLoss(s.num_classes, s.embedding_dim, reduction=s.reduction,
                          **s.chosen(GreedyHashLoss))


# the pairwise hashing methods: every pair of the batch, no miner, no distance or reduction
def build_dpsh(s: LossSettings) -> BatchLoss:
    return DPSHLoss(**s.chosen(DPSHLoss))


def build_hashnet(s: LossSettings) -> BatchLoss:
    chosen = {"alpha": HASHNET_ALPHA_BITS / max(s.embedding_dim, 1), **s.chosen(HashNetLoss)}
    return HashNetLoss(**chosen)


def build_dsh(s: LossSettings) -> BatchLoss:
    return DSHLoss(s.margin, **s.chosen(DSHLoss))


def create_loss(name: str, margin: float, distance: str = "euclidean", reduction: str = "mean",
                num_classes: int = 0, embedding_dim: int = 0,
                options: Iterable[str] = ()) -> BatchLoss:
    """A registered loss composed with a registered distance (``BATCH_DISTANCES``).

    The metric losses ignore ``num_classes`` and ``embedding_dim``; the softmax loss needs
    them (the data set's classes, the embedding's width) and ignores ``margin`` and
    ``distance``. ``options`` (``--loss-options NAME=VALUE``) set the loss's own
    hyper-parameters (its ``options``); a loss that takes none refuses any
    (``ConfigError``).
    """
    settings = LossSettings(margin, BATCH_DISTANCES.create(distance), reduction, num_classes,
                            embedding_dim, tuple(options))
    loss = LOSSES.create(name, settings)
    settings.chosen(type(loss))  # a loss without options, given some: refused here
    return loss


def loss_options(name: str) -> str:
    """The options a registered loss takes, with their defaults and bounds
    (``'lambda=0.0001 (>= 0)'``; ``'none'``)."""
    return describe_options(type(create_loss(name, 0.0, num_classes=2, embedding_dim=1)).options)


@dataclass(frozen=True)
class LossTraits:
    """What a loss is, without building it for a data set: it has a margin to select and
    schedule; it consumes mined tuples; the tuple kinds (``Miner.yields``) it trains on;
    it scores every pair of the batch without a miner (DPSH, HashNet, DSH); it scores codes
    against fixed class targets (CSQ, OrthoHash, GreedyHash)."""

    uses_margin: bool
    uses_miner: bool
    accepts: tuple[str, ...]
    every_pair: bool = False
    class_codes: bool = False


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
    return LossTraits(probe.uses_margin, probe.uses_miner, probe.accepts, probe.every_pair,
                      probe.class_codes)


__all__ = ["BATCH_DISTANCES", "LOSSES", "BatchDistance", "BatchLoss", "CSQLoss",
           "ContrastiveLoss", "DTSHLoss", "FaceNetLoss", "GreedyHashLoss", "HofferAilonLoss",
           "LossOption", "LossOutput", "LossSettings", "LossTraits", "OrthoHashLoss", "SoftmaxLoss",
           "TripletLoss", "batch_loss", "create_loss", "loss_options", "loss_traits", "pairs_of",
           "reduce"]
