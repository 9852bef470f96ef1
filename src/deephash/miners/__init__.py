"""Online miners behind one registry: ``create_miner(name, margin, seed)``.

Triplet miners serve every triplet loss (and the contrastive loss, through the pairs of
their triplets); pair miners (``yields == "pairs"``) serve the pair losses only. The
trainer calls the miner (:func:`deephash.losses.base.batch_loss`) and hands its
tuples to the loss; in training a margin-aware miner mines with the loss's margin, which
the trainer passes in :class:`MiningBatch`. Called on its own, ``miner(embeddings, labels)``
returns pytorch-metric-learning's index tuples (:meth:`Miner.__call__`), which our losses
and PML's take alike (:mod:`deephash.miners.indices`).
"""

from __future__ import annotations

from deephash.miners.base import Mined, Miner, MiningBatch, Pairs, Triplets, label_masks
from deephash.miners.batch_all import BatchAllMiner
from deephash.miners.batch_hard import BatchHardMiner
from deephash.miners.distance_weighted import DistanceWeightedMiner
from deephash.miners.indices import IndicesTuple, from_indices_tuple, triplets_of
from deephash.miners.offline import OfflineMiner
from deephash.miners.pair_negative import PairNegativeMiner
from deephash.miners.pairs import PairMiner
from deephash.registries import MINERS


# the factories of MINERS (deephash.registries) that are not in their own modules; every
# factory takes (margin, seed) and the margin-aware ones (pair_negative) keep the margin
# for mining on their own (in training, MiningBatch.margin: the loss's)
def build_batch_all(margin: float, seed: int = 0) -> Miner:
    return BatchAllMiner()


def build_batch_hard(margin: float, seed: int = 0) -> Miner:
    return BatchHardMiner()


def build_distance_weighted(margin: float, seed: int = 0) -> Miner:
    return DistanceWeightedMiner(seed=seed)


def build_offline(margin: float, seed: int = 0) -> Miner:
    return OfflineMiner(3)


def build_all_pairs(margin: float, seed: int = 0) -> Miner:
    return PairMiner("all")


def build_hard_pairs(margin: float, seed: int = 0) -> Miner:
    return PairMiner("hard")


def build_offline_pairs(margin: float, seed: int = 0) -> Miner:
    return OfflineMiner(2)


def create_miner(name: str, margin: float, seed: int = 0) -> Miner:
    """A registered miner; the margin-aware ones mine with ``margin`` when the batch carries
    none (``MiningBatch.margin``, which the trainer fills with the loss's margin)."""
    return MINERS.create(name, margin, seed)


def miner_names(yields: str) -> list[str]:
    """Registered miners that yield ``"triplets"`` or ``"pairs"``."""
    return [name for name in MINERS.names() if create_miner(name, 0.0).yields == yields]


__all__ = ["MINERS", "BatchAllMiner", "BatchHardMiner", "DistanceWeightedMiner", "IndicesTuple",
           "Mined", "Miner", "MiningBatch", "OfflineMiner", "PairMiner", "PairNegativeMiner",
           "Pairs", "Triplets", "create_miner", "from_indices_tuple", "label_masks",
           "miner_names", "triplets_of"]
