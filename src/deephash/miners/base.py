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
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from deephash.labels import batch_relevance


class Triplets(NamedTuple):
    """Batch indices of mined triplets, each ``(T,)`` int64."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
