"""Online miners behind one registry: ``create_miner(name, margin, seed)``.

Triplet miners serve every triplet loss (and the contrastive loss, through the pairs of
their triplets); pair miners (``yields == "pairs"``) serve the pair losses only.
"""

from __future__ import annotations

from deephash.miners.base import Mined, Miner, MiningBatch, Pairs, Triplets, label_masks
from deephash.miners.batch_all import BatchAllMiner
from deephash.miners.batch_hard import BatchHardMiner
from deephash.miners.distance_weighted import DistanceWeightedMiner
from deephash.miners.offline import OfflineMiner
from deephash.miners.pair_negative import PairNegativeMiner, curriculum, random_hard, semi_hard
from deephash.miners.pairs import PairMiner
from deephash.registry import Registry

MINERS: Registry[Miner] = Registry("miner")
MINERS.register("batch-all")(lambda margin, seed=0: BatchAllMiner())
MINERS.register("batch-hard")(lambda margin, seed=0: BatchHardMiner())
MINERS.register("semi-hard")(semi_hard)
MINERS.register("random-hard")(random_hard)
MINERS.register("distance-weighted")(lambda margin, seed=0: DistanceWeightedMiner(seed=seed))
MINERS.register("curriculum")(curriculum)
MINERS.register("offline")(lambda margin, seed=0: OfflineMiner(3))
MINERS.register("all-pairs")(lambda margin, seed=0: PairMiner("all"))
MINERS.register("hard-pairs")(lambda margin, seed=0: PairMiner("hard"))
MINERS.register("offline-pairs")(lambda margin, seed=0: OfflineMiner(2))


def create_miner(name: str, margin: float, seed: int = 0) -> Miner:
    """A registered miner; ``margin`` is used by the margin-aware ones."""
    return MINERS.create(name, margin, seed)


def miner_names(yields: str) -> list[str]:
    """Registered miners that yield ``"triplets"`` or ``"pairs"``."""
    return [name for name in MINERS.names() if create_miner(name, 0.0).yields == yields]


__all__ = ["MINERS", "BatchAllMiner", "BatchHardMiner", "DistanceWeightedMiner", "Mined", "Miner",
           "MiningBatch", "OfflineMiner", "PairMiner", "PairNegativeMiner", "Pairs", "Triplets",
           "create_miner", "label_masks", "miner_names"]
