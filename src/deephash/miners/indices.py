"""pytorch-metric-learning's index tuples, read as mined tuples.

PML's miners return, and its losses take, ``indices_tuple``: ``(anchors, positives,
negatives)`` for triplets, ``(anchors1, positives, anchors2, negatives)`` for pairs (the
positive pairs ``(anchors1[i], positives[i])``, the negative pairs ``(anchors2[j],
negatives[j])``), 1-D integer tensors of batch positions. :func:`from_indices_tuple`
reads one as :class:`~deephash.miners.base.Triplets` or
:class:`~deephash.miners.base.Pairs` (what our losses score; ``Triplets.indices_tuple``
and ``Pairs.indices_tuple`` write them), and :func:`triplets_of` forms the triplets of
pairs as PML's ``convert_to_triplets`` does, so a triplet loss trains on a pair miner's
output as PML's do. The tuples are taken as given: a "positive" that shares no label with
its anchor is scored as a positive, as in PML.
"""

from __future__ import annotations

import torch

from deephash.errors import ConfigError
from deephash.miners.base import Mined, Pairs, Triplets

#: PML's index tuple: three (triplets) or four (pairs) ``(T,)`` integer tensors
IndicesTuple = tuple[torch.Tensor, ...]


def from_indices_tuple(indices_tuple: IndicesTuple, batch_size: int,
                       device: torch.device) -> Mined:
    """PML's ``(a, p, n)`` -> :class:`Triplets`, ``(a1, p, a2, n)`` -> :class:`Pairs`
    (``same`` True for the ``(a1, p)`` pairs), as int64 on ``device``. ``ConfigError`` for
    another number of parts, parts of a role that differ in length, non-integer or
    multi-dimensional parts, or positions outside ``[0, batch_size)``."""
    if isinstance(indices_tuple, (Triplets, Pairs)):
        return indices_tuple
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        raise ConfigError("indices_tuple must be (anchors, positives, negatives) or (anchors1, "
                          "positives, anchors2, negatives), as a PML miner returns")
    parts = [torch.as_tensor(part, device=device) for part in indices_tuple]
    for part in parts:
        if part.dim() != 1 or part.dtype.is_floating_point or part.dtype == torch.bool:
            raise ConfigError("indices_tuple holds 1-D integer tensors of batch positions, "
                              f"not a {part.dtype} tensor of shape {tuple(part.shape)}")
        outside = part[(part < 0) | (part >= batch_size)]
        if outside.numel():
            raise ConfigError(f"indices_tuple names position {int(outside[0])} in a batch of "
                              f"{batch_size}; give positions 0 to {batch_size - 1}")
    parts = [part.long() for part in parts]
    if len(parts) == 3:
        if not len(parts[0]) == len(parts[1]) == len(parts[2]):
            raise ConfigError("indices_tuple: anchors, positives and negatives differ in length")
        return Triplets(*parts)
    a1, p, a2, n = parts
    if len(a1) != len(p) or len(a2) != len(n):
        raise ConfigError("indices_tuple: anchors1 and positives, or anchors2 and negatives, "
                          "differ in length")
    same = torch.cat([torch.ones(len(a1), dtype=torch.bool, device=device),
                      torch.zeros(len(a2), dtype=torch.bool, device=device)])
    return Pairs(torch.cat([a1, a2]), torch.cat([p, n]), same)


def triplets_of(pairs: Pairs) -> Triplets:
    """Every ``(a, p, n)`` with ``(a, p)`` a positive and ``(a, n)`` a negative pair of
    ``pairs`` (its first element the anchor), in PML's order (``convert_to_triplets``:
    positive pairs in order, each with its anchor's negatives in order)."""
    a1, p, a2, n = pairs.indices_tuple()
    positive, negative = torch.nonzero(a1[:, None] == a2[None, :], as_tuple=True)
    return Triplets(a1[positive], p[positive], n[negative])


__all__ = ["IndicesTuple", "from_indices_tuple", "triplets_of"]
