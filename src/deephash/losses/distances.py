"""The training distances under the names the losses and miners import: each is a member of
:mod:`deephash.distances`, whose ``matrix(x)`` is the differentiable ``(B, B)`` batch matrix
(``--train-distance``: the ``BATCH_DISTANCES`` registry)."""

from __future__ import annotations

from deephash.distances import (
    CosineDistance,
    Distance,
    EuclideanDistance,
    NegativeHalfInnerProduct,
    SquaredEuclideanDistance,
)
from deephash.registries import BATCH_DISTANCES

#: what a loss composes: any :class:`~deephash.distances.Distance` offering ``batch_matrix``
BatchDistance = Distance

__all__ = ["BATCH_DISTANCES", "BatchDistance", "CosineDistance", "EuclideanDistance",
           "NegativeHalfInnerProduct", "SquaredEuclideanDistance"]
