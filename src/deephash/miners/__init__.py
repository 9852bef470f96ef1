"""Online triplet miners behind one registry: ``create_miner(name, margin, seed)``."""

from __future__ import annotations

from deephash.miners.base import MiningBatch, TripletMiner, Triplets, label_masks
from deephash.miners.batch_all import BatchAllMiner
from deephash.miners.batch_hard import BatchHardMiner
from deephash.miners.distance_weighted import DistanceWeightedMiner
from deephash.miners.offline import OfflineMiner
from deephash.miners.pair_negative import PairNegativeMiner, curriculum, random_hard, semi_hard
from deephash.registry import Registry

MINERS: Registry[TripletMiner] = Registry("miner")
MINERS.register("batch-all")(lambda margin, seed=0: BatchAllMiner())
MINERS.register("batch-hard")(lambda margin, seed=0: BatchHardMiner())
MINERS.register("semi-hard")(semi_hard)
MINERS.register("random-hard")(random_hard)
MINERS.register("distance-weighted")(lambda margin, seed=0: DistanceWeightedMiner(seed=seed))
MINERS.register("curriculum")(curriculum)
MINERS.register("offline")(lambda margin, seed=0: OfflineMiner())


def create_miner(name: str, margin: float, seed: int = 0) -> TripletMiner:
    """A registered miner; ``margin`` is used by the margin-aware ones."""
    return MINERS.create(name, margin, seed)


__all__ = ["MINERS", "BatchAllMiner", "BatchHardMiner", "DistanceWeightedMiner", "MiningBatch",
           "OfflineMiner", "PairNegativeMiner", "TripletMiner", "Triplets", "create_miner",
           "label_masks"]
