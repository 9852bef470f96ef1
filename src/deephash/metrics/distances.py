"""The evaluators' distances (``--distance``: the ``DISTANCES`` registry): members of
:mod:`deephash.distances` whose ``prepare`` and ``evaluation_matrix`` give chunked
``(Q, N)`` float32 distances accumulated in float64."""

from __future__ import annotations

from deephash.distances import Distance
from deephash.registries import DISTANCES

DISTANCE_NAMES = tuple(DISTANCES.names())


def get_distance(name: str) -> Distance:
    """The evaluation distance ``name`` (``ConfigError`` naming the known ones)."""
    return DISTANCES.create(name)


__all__ = ["DISTANCES", "DISTANCE_NAMES", "Distance", "get_distance"]
