"""One negative per anchor-positive pair, chosen from a window of the anchor's negatives.

Each anchor's negatives are sorted by distance (nearest, i.e. hardest, first; ties by
batch index). For a pair (a, p) with distance d_ap and margin m, a *window* of that sorted
list is selected and one negative is *picked* from it:

============== ===================================== ========================
miner          window                                pick
============== ===================================== ========================
semi-hard      d_ap < d_an < d_ap + m  (FaceNet)     the nearest (hardest)
random-hard    d_an < d_ap + m  (positive loss)      uniformly at random
curriculum     d_an < d_ap + m  (positive loss)      at hardness h(t), below
============== ===================================== ========================

Window bounds come from ``searchsorted`` of each anchor's positive distances (a padded
``(B, K)`` table) in its sorted row, so time is O(B^2 log B) and memory O(B^2); no
``(B, B, B)`` tensor is built. Pairs whose window is empty get no
triplet (they are counted by the losses' statistics, never filled with a made-up one).
"""

from __future__ import annotations

import torch

from deephash.miners.base import Miner, MiningBatch, Triplets, index_table, label_masks

WINDOWS = ("semi-hard", "violating")
PICKS = ("nearest", "random", "curriculum")


class PairNegativeMiner(Miner):
    """The parametrised miner behind semi-hard, random-hard and curriculum.

    Args:
        margin: m of the window bounds when the batch carries none (a miner used on its
            own); in training the batch carries the loss's margin (``MiningBatch.margin``).
        window: ``semi-hard`` or ``violating``.
        pick: ``nearest``, ``random`` or ``curriculum``.
        seed: seed of the miner's own random generator (``random`` pick).
    """

    uses_margin = True

    def __init__(self, margin: float, window: str, pick: str, seed: int = 0) -> None:
        if window not in WINDOWS or pick not in PICKS:
            raise ValueError(f"window must be one of {WINDOWS}, pick one of {PICKS}")
        self.margin = float(margin)
        self.window = window
        self.pick = pick
        self.generator = torch.Generator().manual_seed(seed)
        self.hardness = 0.0

    def set_progress(self, fraction: float) -> None:
        """Curriculum: hardness h(t) = t, from the easiest to the hardest violating negative."""
        self.hardness = min(max(float(fraction), 0.0), 1.0)

    def mine(self, batch: MiningBatch) -> Triplets:
        positive, negative = label_masks(batch.labels)
        d = batch.distances
        sorted_d, sorted_index = d.masked_fill(~negative, float("inf")).sort(dim=1, stable=True)
        n_negative = negative.sum(dim=1, keepdim=True)
        pos_table, is_pair = index_table(positive)  # (B, K_max) positives, index order
        if pos_table.shape[1] == 0:
            return Triplets.empty(d.device)
        d_ap = d.gather(1, pos_table)
        margin = self.margin if batch.margin is None else batch.margin
        upper = torch.searchsorted(sorted_d, d_ap + margin, right=False)  # d_an < d_ap + m
        if self.window == "semi-hard":
            lower = torch.searchsorted(sorted_d, d_ap, right=True)  # d_an > d_ap
        else:
            lower = torch.zeros_like(upper)
        upper = torch.minimum(upper, n_negative)
        anchor, slot = torch.nonzero(is_pair & (upper > lower), as_tuple=True)
        if anchor.numel() == 0:
            return Triplets.empty(d.device)
        pos = pos_table[anchor, slot]
        lo, width = lower[anchor, slot], (upper - lower)[anchor, slot]
        if self.pick == "nearest":
            chosen = lo
        elif self.pick == "random":
            u = torch.rand(len(lo), generator=self.generator).to(d.device)
            chosen = lo + (u * width).long().clamp_max(width - 1)
        else:  # curriculum: position 0 = hardest violating, width - 1 = easiest violating
            easiest = width - 1
            chosen = lo + torch.round((1.0 - self.hardness) * easiest).long()
        return Triplets(anchor, pos, sorted_index[anchor, chosen])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(margin={self.margin}, window={self.window!r}, "
                f"pick={self.pick!r})")


def semi_hard(margin: float, seed: int = 0) -> PairNegativeMiner:
    """FaceNet's semi-hard negatives: the nearest negative farther than the positive."""
    miner = PairNegativeMiner(margin, "semi-hard", "nearest", seed)
    miner.name = "semi-hard"
    return miner


def random_hard(margin: float, seed: int = 0) -> PairNegativeMiner:
    """A random negative among those giving the pair a positive loss."""
    miner = PairNegativeMiner(margin, "violating", "random", seed)
    miner.name = "random-hard"
    return miner


def curriculum(margin: float, seed: int = 0) -> PairNegativeMiner:
    """Ours: from the easiest to the hardest margin-violating negative as training advances.

    At the start (t = 0) each pair gets the violating negative nearest the margin boundary,
    which is a semi-hard one whenever one exists: semi-hard mining is stable on an
    unstructured embedding, where the hardest negatives are mostly label noise and
    outliers and can collapse it (Schroff et al. 2015; Hermans et al. 2017). As t goes
    to 1 the pick moves linearly through the sorted violators to the hardest one, whose
    gradient is the most informative once the embedding has structure. One knob,
    no extra hyperparameter beyond the margin; measured in the miner study.
    """
    miner = PairNegativeMiner(margin, "violating", "curriculum", seed)
    miner.name = "curriculum"
    return miner
