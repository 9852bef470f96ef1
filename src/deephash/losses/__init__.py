"""Triplet and pair losses behind one registry: ``create_loss(name, margin, distance, ...)``."""

from __future__ import annotations

from deephash.losses.base import LossOutput, TripletLoss, reduce
from deephash.losses.contrastive import ContrastiveLoss, pairs_of
from deephash.losses.distances import BATCH_DISTANCES, BatchDistance
from deephash.losses.dtsh import DTSHLoss
from deephash.losses.facenet import FaceNetLoss
from deephash.losses.hoffer import HofferAilonLoss
from deephash.registry import Registry

LOSSES: Registry[TripletLoss] = Registry("loss")
LOSSES.register("facenet")(lambda margin, distance, reduction: FaceNetLoss(margin, distance,
                                                                           reduction))
LOSSES.register("hoffer")(lambda margin, distance, reduction: HofferAilonLoss(distance, reduction))
LOSSES.register("contrastive")(lambda margin, distance, reduction: ContrastiveLoss(
    margin, distance, reduction))
LOSSES.register("dtsh")(lambda margin, distance, reduction: DTSHLoss(margin, distance,
                                                                     reduction))


def create_loss(name: str, margin: float, distance: str = "euclidean",
                reduction: str = "mean") -> TripletLoss:
    """A registered loss composed with a registered distance (``BATCH_DISTANCES``)."""
    return LOSSES.create(name, margin, BATCH_DISTANCES.create(distance), reduction)


__all__ = ["BATCH_DISTANCES", "LOSSES", "BatchDistance", "ContrastiveLoss", "DTSHLoss",
           "FaceNetLoss",
           "HofferAilonLoss", "LossOutput", "TripletLoss", "create_loss", "pairs_of", "reduce"]
