"""Distances between embeddings, computed in chunks by the evaluators.

A :class:`Distance` prepares vectors once (``cosine`` L2-normalises them) and then turns a
chunk of queries and the database into a ``(Q, N)`` float32 distance matrix.

Distances are accumulated in float64 and rounded to float32. A float32 matrix product
rounds differently depending on the shapes it is given, so the same pair could get
distances one ulp apart in two chunkings; after float64 accumulation, equal distances
(duplicates, symmetric points) come out bitwise equal, ties are real ties, and the
index tie-break makes rankings independent of chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deephash.registries import DISTANCES


@dataclass(frozen=True)
class Distance:
    """``euclidean``: ||q - d||;  ``sqeuclidean``: ||q - d||^2;  ``cosine``: 1 - cos(q, d)."""

    name: str

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` -> ``(n, D)`` float64 (unit rows for cosine)."""
        x = x.double()
        return F.normalize(x, dim=1) if self.name == "cosine" else x

    def matrix(self, queries: torch.Tensor, database: torch.Tensor,
               database_sq_norms: torch.Tensor | None = None,
               buffer: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared ``(Q, D)`` and ``(N, D)`` -> ``(Q, N)`` float32 distances.

        ``database_sq_norms`` (``(N,)``) may be passed to avoid recomputing it per chunk;
        ``buffer``, a float64 tensor of at least ``Q * N`` elements, is used as scratch
        space (every step runs in place, so chunked callers allocate nothing large).
        """
        n_q, n_d = queries.shape[0], database.shape[0]
        scratch = None if buffer is None else buffer.view(-1)[: n_q * n_d].view(n_q, n_d)
        work = torch.mm(queries, database.T, out=scratch)
        if self.name == "cosine":
            return work.mul_(-1.0).add_(1.0).float()
        if database_sq_norms is None:
            database_sq_norms = (database * database).sum(1)
        work.mul_(-2.0).add_(database_sq_norms).add_((queries * queries).sum(1, keepdim=True))
        work.clamp_min_(0.0)
        return (work if self.name == "sqeuclidean" else work.sqrt_()).float()


DISTANCE_NAMES = tuple(DISTANCES.names())


def get_distance(name: str) -> Distance:
    """The registered distance ``name`` (``ConfigError`` naming the known ones)."""
    return DISTANCES.create(name)
