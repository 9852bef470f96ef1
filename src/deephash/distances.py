"""Every distance, once: a small class per distance with the operations it offers.

===============  ============  ============  ========  ============  ============
distance         batch (B, B)  eval (Q, N)   row-wise  packed codes  ranking (Q, N)
===============  ============  ============  ========  ============  ============
euclidean        yes           yes           yes                     yes
sqeuclidean      yes           yes           yes                     yes
cosine           yes           yes           yes                     yes
neg-half-inner   yes                                                 yes
hamming                                      yes       yes
===============  ============  ============  ========  ============  ============

- ``batch_matrix(x)``: the differentiable ``(B, B)`` distances of a training batch to
  itself (losses and miners, ``--train-distance``); the diagonal is exactly 0. The
  Euclidean square root has an unbounded derivative at zero; here its derivative at exactly
  coinciding points is 0 (sub-gradient), so equal embeddings never give NaN or inf gradients.
- ``prepare(x)``, then ``evaluation_matrix(queries, database)``: the chunked evaluators'
  ``(Q, N)`` float32 distances (``--distance``). They are accumulated in float64 and rounded
  to float32: a float32 matrix product rounds differently depending on the shapes it is
  given, so the same pair could get distances one ulp apart in two chunkings; after float64
  accumulation equal distances (duplicates, symmetric points) come out bitwise equal, ties
  are real ties, and the index tie-break makes rankings independent of chunk size.
- ``rowwise(a, b)``: ``(n,)`` float64 distances between matching rows (verification).
- ``codes(x)``, then ``code_matrix(queries, database)``: Hamming distances between packed
  sign codes (:mod:`deephash.hashing.codes`; sign(0) = +1 here and in ``rowwise``).
- ``ranking_matrix(queries, database)``: NumPy ``(Q, D)`` and ``(N, D)`` -> ``(Q, N)``
  float64 distances of a few candidates, for ordering a hashing model's relaxed outputs
  where their codes tie (:mod:`deephash.index.rerank`); every training distance offers
  it, DTSH's ``neg-half-inner`` included (-x·y/2: its training score, negated).

Every member is a dissimilarity, smaller = nearer (``neg-half-inner`` is DTSH's score
negated to be one). A member asked for an operation it does not offer raises a
``ConfigError`` naming the members that do. Callers ask the object (``binary``: scored on
sign codes; ``normalizes``: compares directions), never its name. The command line's names
are in :mod:`deephash.registries` (``BATCH_DISTANCES``, ``DISTANCES``), both pointing here;
:func:`as_distance` finds any member, Hamming included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from deephash.errors import ConfigError
from deephash.hashing.codes import binarize, hamming_matrix, pack_codes

#: what each operation is, for the error raised by a member that does not offer it
OPERATIONS = {
    "batch_matrix": "differentiable batch matrix (training, --train-distance)",
    "evaluation_matrix": "float evaluation matrix (--distance)",
    "rowwise": "row-wise form (verification metrics)",
    "code_matrix": "packed-code matrix (binary codes)",
    "ranking_matrix": "ranking matrix of relaxed outputs (re-ranking Hamming ties)",
}


@dataclass(frozen=True)
class Distance:
    """Base of every distance; an operation a subclass does not override is not offered."""

    name: ClassVar[str] = "base"
    binary: ClassVar[bool] = False  # scored on packed sign codes, not on float vectors
    normalizes: ClassVar[bool] = False  # compares directions: rows are L2-normalised first

    @classmethod
    def offers(cls, operation: str) -> bool:
        """Whether this distance implements ``operation`` (a key of ``OPERATIONS``)."""
        return getattr(cls, operation) is not getattr(Distance, operation)

    def _not_offered(self, operation: str) -> ConfigError:
        return ConfigError(f"distance {self.name!r} has no {OPERATIONS[operation]}; use one of: "
                           f"{', '.join(names_offering(operation))}")

    def batch_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, B)`` differentiable distances, the diagonal exactly 0."""
        raise self._not_offered("batch_matrix")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` -> ``(n, D)`` float64 rows for :meth:`evaluation_matrix` (unit rows
        where the distance ``normalizes``)."""
        x = x.double()
        return F.normalize(x, dim=1) if self.normalizes else x

    def evaluation_matrix(self, queries: torch.Tensor, database: torch.Tensor,
                          database_sq_norms: torch.Tensor | None = None,
                          buffer: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared ``(Q, D)`` and ``(N, D)`` -> ``(Q, N)`` float32 distances.

        ``database_sq_norms`` (``(N,)``) may be passed to avoid recomputing it per chunk;
        ``buffer``, a float64 tensor of at least ``Q * N`` elements, is used as scratch
        space (every step runs in place, so chunked callers allocate nothing large).
        """
        raise self._not_offered("evaluation_matrix")

    def rowwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(n, D)`` and ``(n, D)`` -> ``(n,)`` float64 distances between matching rows."""
        raise self._not_offered("rowwise")

    def codes(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(n, K)`` real -> ``(n, ceil(K/8))`` packed uint8 sign codes."""
        raise self._not_offered("code_matrix")

    def code_matrix(self, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
        """Packed ``(Q, B)`` and ``(N, B)`` codes -> ``(Q, N)`` int32 distances."""
        raise self._not_offered("code_matrix")

    def ranking_matrix(self, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
        """NumPy ``(Q, D)`` and ``(N, D)`` real -> ``(Q, N)`` float64 distances."""
        raise self._not_offered("ranking_matrix")

    def matrix(self, x: torch.Tensor, database: torch.Tensor | None = None,
               database_sq_norms: torch.Tensor | None = None,
               buffer: torch.Tensor | None = None) -> torch.Tensor:
        """``matrix(x)`` is :meth:`batch_matrix`; ``matrix(queries, database, ...)`` is
        :meth:`evaluation_matrix` (the losses, the miners and the evaluators call this)."""
        if database is None:
            return self.batch_matrix(x)
        return self.evaluation_matrix(x, database, database_sq_norms, buffer)


def _squared_euclidean(x: torch.Tensor) -> torch.Tensor:
    norms = (x * x).sum(dim=1)
    squared = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    squared = squared.clamp_min(0.0)
    return squared * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def _inner_products(queries: torch.Tensor, database: torch.Tensor,
                    buffer: torch.Tensor | None) -> torch.Tensor:
    """``(Q, N)`` products, written into ``buffer`` when given."""
    n_q, n_d = queries.shape[0], database.shape[0]
    scratch = None if buffer is None else buffer.view(-1)[: n_q * n_d].view(n_q, n_d)
    return torch.mm(queries, database.T, out=scratch)


def _squared_euclidean_cross(queries: torch.Tensor, database: torch.Tensor,
                             database_sq_norms: torch.Tensor | None,
                             buffer: torch.Tensor | None) -> torch.Tensor:
    """``(Q, N)`` float64 squared distances, in place in ``buffer``."""
    work = _inner_products(queries, database, buffer)
    if database_sq_norms is None:
        database_sq_norms = (database * database).sum(1)
    work.mul_(-2.0).add_(database_sq_norms).add_((queries * queries).sum(1, keepdim=True))
    return work.clamp_min_(0.0)


def _ranking_by_evaluation(self: Distance, queries: np.ndarray,
                           database: np.ndarray) -> np.ndarray:
    """:meth:`Distance.ranking_matrix` of the members that have an evaluation matrix."""
    with torch.inference_mode():
        return self.evaluation_matrix(self.prepare(torch.as_tensor(np.asarray(queries))),
                                      self.prepare(torch.as_tensor(np.asarray(database)))
                                      ).double().numpy()


def _float64_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


class SquaredEuclideanDistance(Distance):
    """||x_i - x_j||^2."""

    name = "sqeuclidean"
    ranking_matrix = _ranking_by_evaluation

    def batch_matrix(self, x: torch.Tensor) -> torch.Tensor:
        return _squared_euclidean(x)

    def evaluation_matrix(self, queries: torch.Tensor, database: torch.Tensor,
                          database_sq_norms: torch.Tensor | None = None,
                          buffer: torch.Tensor | None = None) -> torch.Tensor:
        return _squared_euclidean_cross(queries, database, database_sq_norms, buffer).float()

    def rowwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = _float64_rows(a, b)
        return np.square(a - b).sum(axis=1)


class EuclideanDistance(Distance):
    """||x_i - x_j||."""

    name = "euclidean"
    ranking_matrix = _ranking_by_evaluation

    def batch_matrix(self, x: torch.Tensor) -> torch.Tensor:
        squared = _squared_euclidean(x)
        positive = squared > 0
        # sqrt only where the argument is positive: finite gradients at coinciding points
        return torch.where(positive, squared.where(positive, 1.0).sqrt(), 0.0)

    def evaluation_matrix(self, queries: torch.Tensor, database: torch.Tensor,
                          database_sq_norms: torch.Tensor | None = None,
                          buffer: torch.Tensor | None = None) -> torch.Tensor:
        squared = _squared_euclidean_cross(queries, database, database_sq_norms, buffer)
        return squared.sqrt_().float()

    def rowwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(SquaredEuclideanDistance().rowwise(a, b))


class CosineDistance(Distance):
    """1 - cos(x_i, x_j), in [0, 2]."""

    name = "cosine"
    normalizes = True
    ranking_matrix = _ranking_by_evaluation

    def batch_matrix(self, x: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(x, dim=1)
        cos = (unit @ unit.T).clamp(-1.0, 1.0)
        return (1.0 - cos) * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))

    def evaluation_matrix(self, queries: torch.Tensor, database: torch.Tensor,
                          database_sq_norms: torch.Tensor | None = None,
                          buffer: torch.Tensor | None = None) -> torch.Tensor:
        return _inner_products(queries, database, buffer).mul_(-1.0).add_(1.0).float()

    def rowwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = _float64_rows(a, b)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return 1.0 - (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


class NegativeHalfInnerProduct(Distance):
    """-θ with θ_ij = x_i·x_j / 2, DTSH's pairwise score (Wang et al. 2016) turned into a
    dissimilarity (larger = farther) so that miners and losses can use it. Not a metric;
    the diagonal is set to 0 like the others (no loss uses it). Training only."""

    name = "neg-half-inner"

    def batch_matrix(self, x: torch.Tensor) -> torch.Tensor:
        scores = -0.5 * (x @ x.T)
        return scores * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))

    def ranking_matrix(self, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
        q, d = _float64_rows(queries, database)
        return -0.5 * (q @ d.T)


class HammingDistance(Distance):
    """The number of differing signs (sign(0) = +1); a hashing model's relaxed outputs are
    scored as their packed sign codes (:mod:`deephash.metrics.evaluate_codes`). Not
    differentiable, so not a training distance."""

    name = "hamming"
    binary = True

    def rowwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (binarize(np.asarray(a)) != binarize(np.asarray(b))).sum(axis=1).astype(np.float64)

    def codes(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return pack_codes(binarize(x))

    def code_matrix(self, queries: np.ndarray, database: np.ndarray) -> np.ndarray:
        return hamming_matrix(queries, database)


#: every distance by name
MEMBERS: dict[str, type[Distance]] = {cls.name: cls for cls in (
    EuclideanDistance, SquaredEuclideanDistance, CosineDistance, NegativeHalfInnerProduct,
    HammingDistance)}


def names_offering(operation: str) -> tuple[str, ...]:
    """The names of the members that offer ``operation`` (a key of ``OPERATIONS``)."""
    return tuple(name for name, cls in MEMBERS.items() if cls.offers(operation))


def as_distance(distance: str | Distance) -> Distance:
    """The member named ``distance`` (a ``Distance`` is returned as it is); ``ConfigError``
    naming the members for an unknown name."""
    if isinstance(distance, Distance):
        return distance
    if distance not in MEMBERS:
        raise ConfigError(f"unknown distance {distance!r}; known: {', '.join(MEMBERS)}")
    return MEMBERS[distance]()


def scoring_distance(distance: str, codes: bool) -> Distance:
    """What a model's outputs are scored with: Hamming on their sign codes for a hashing
    model (``codes``), else the evaluation distance named ``distance``."""
    return HammingDistance() if codes else as_distance(distance)
