"""The miner contract: a batch's detached distances and labels in, index tuples out.

A miner yields :class:`Triplets` (anchor, positive, negative) or, for the pair losses,
:class:`Pairs` (first, second, same); ``Miner.yields`` says which. Miners never invent a
tuple: a batch without any valid one (all one class, all distinct classes, a single
image) yields empty index tensors, which the losses turn into a zero loss that keeps a
gradient path.

Labels are ``(B,)`` int64 class ids or ``(B, C)`` bool multi-hot rows; every miner asks
:func:`label_masks` (that is, :func:`deephash.labels.batch_relevance`) which positions are
positives and negatives of which, so single- and multi-label batches are mined alike: a
positive shares at least one label with the anchor, a negative shares none.

A miner is also called as pytorch-metric-learning's miners are: ``miner(embeddings,
labels)`` mines a batch on its own and returns PML's index tuples, ``(anchors, positives,
negatives)`` or ``(anchors1, positives, anchors2, negatives)`` (:meth:`Miner.__call__`);
:mod:`deephash.miners.indices` reads such tuples back.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from deephash.distances import Distance
from deephash.errors import ConfigError
from deephash.labels import batch_relevance
from deephash.registries import BATCH_DISTANCES


class Triplets(NamedTuple):
    """Batch indices of mined triplets, each ``(T,)`` int64."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())

    def indices_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """PML's triplet tuple ``(anchors, positives, negatives)`` (a plain tuple: its
        ``len`` is 3, where a ``Triplets``'s is the number of triplets)."""
        return self.anchor, self.positive, self.negative

    @classmethod
    def empty(cls, device: torch.device) -> Triplets:
        none = torch.empty(0, dtype=torch.long, device=device)
        return cls(none, none, none)


class Pairs(NamedTuple):
    """Batch indices of mined pairs, ``first`` and ``second`` ``(M,)`` int64, and ``same``
    ``(M,)`` bool (True for a positive pair, same label)."""

    first: torch.Tensor
    second: torch.Tensor
    same: torch.Tensor

    def __len__(self) -> int:
        return int(self.first.numel())

    def indices_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """PML's pair tuple ``(anchors1, positives, anchors2, negatives)``: the positive
        pairs, then the negative ones, each in mined order."""
        return (self.first[self.same], self.second[self.same], self.first[~self.same],
                self.second[~self.same])


Mined = Triplets | Pairs


class MiningBatch(NamedTuple):
    """What a miner sees: ``distances`` ``(B, B)`` (detached), ``labels`` (``(B,)`` int64
    class ids, ``-1`` unlabelled, or ``(B, C)`` bool multi-hot rows), ``embeddings``
    ``(B, D)`` (detached), and the ``margin`` of the loss being trained.

    In training the trainer passes the loss's margin, so the margin lives once (on the
    loss) and a schedule that changes it changes what the miner mines. ``None`` (a miner
    used on its own) lets a margin-aware miner use the margin it was built with.
    """

    distances: torch.Tensor
    labels: torch.Tensor
    embeddings: torch.Tensor
    margin: float | None = None


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` ``(B, B)`` bool masks of ``(B,)`` ids or ``(B, C)``
    multi-hot labels: positive = shares a label, not the same position; negative = shares
    no label, both labelled (an unlabelled image is neither; the samplers never draw one).

    For single-label ids without ``-1`` this is exactly ``(same & ~eye, ~same)``.
    """
    relevant = batch_relevance(labels)
    labelled = relevant.diagonal()  # a labelled image is relevant to itself
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return relevant & ~eye, ~relevant & labelled[:, None] & labelled[None, :]


def check_batch(embeddings: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, D)`` embeddings and their labels (a tensor or anything ``torch.as_tensor``
    reads: ``(B,)`` class ids or ``(B, C)`` bool multi-hot rows), the labels moved to the
    embeddings' device; ``ConfigError`` for other shapes."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        raise ConfigError("embeddings must be a (B, D) tensor, got "
                          f"{tuple(getattr(embeddings, 'shape', ()))}")
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.dim() not in (1, 2) or len(labels) != len(embeddings):
        raise ConfigError(f"labels of shape {tuple(labels.shape)} for {len(embeddings)} "
                          "embeddings; give (B,) class ids or (B, C) multi-hot rows")
    return embeddings, labels


def index_table(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise indices of the True entries of a ``(B, B)`` mask, ascending, padded.

    Returns ``(table, valid)``, both ``(B, M)`` with M the largest row count: ``table[i, j]``
    is the j-th True column of row i where ``valid[i, j]``, and 0 elsewhere.
    """
    counts = mask.sum(dim=1)
    width = int(counts.max()) if mask.numel() else 0
    table = mask.to(torch.int8).sort(dim=1, descending=True, stable=True).indices[:, :width]
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
    return table.masked_fill(~valid, 0), valid


class Miner:
    """Base class: subclasses implement :meth:`mine`.

    ``yields`` is ``"triplets"`` or ``"pairs"``. ``set_progress(t)`` tells the miner how far
    training is (0 at the start, 1 at the end); only curriculum miners use it.
    ``tuple_size`` is set by the offline miners only: their batches must come from the
    offline sampler with that many blocks. ``uses_margin``: what it mines depends on the
    margin (``MiningBatch.margin``), which must then be positive.
    """

    name = "base"
    yields = "triplets"
    tuple_size: int | None = None
    uses_margin = False

    def mine(self, batch: MiningBatch) -> Mined:
        raise NotImplementedError

    def set_progress(self, fraction: float) -> None:
        del fraction

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor,
                 distance: Distance | str = "euclidean") -> tuple[torch.Tensor, ...]:
        """Mine a batch on its own, as pytorch-metric-learning's miners are called.

        ``(B, D)`` embeddings and their labels (``(B,)`` int64 class ids or ``(B, C)`` bool
        multi-hot rows) -> PML's index tuple: ``(anchors, positives, negatives)`` from a
        triplet miner, ``(anchors1, positives, anchors2, negatives)`` from a pair miner,
        ``(T,)`` int64 each. The distances are ``distance``'s (a ``BATCH_DISTANCES`` name
        or a :class:`~deephash.distances.Distance`; mine with the loss's, ``loss.distance``,
        for the tuples the trainer would choose), computed without gradients; a
        margin-aware miner mines with the margin it was built with.
        """
        embeddings, labels = check_batch(embeddings, labels)
        metric = BATCH_DISTANCES.create(distance) if isinstance(distance, str) else distance
        with torch.no_grad():
            detached = embeddings.detach()
            mined = self.mine(MiningBatch(metric.matrix(detached), labels, detached))
        return mined.indices_tuple()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
