"""One protocol for every retrieval index (the shape of faiss's).

``add(vectors, ids)`` appends rows (``ids`` default to 0, 1, 2, ... in insertion order),
``search(queries, k) -> SearchResult(distances, ids)`` returns ``(Q, k)`` arrays sorted
by distance with ties in insertion order (exact indexes) and ``-1`` ids where fewer than k
rows exist; ``ntotal`` counts rows; ``save(path)`` / ``load_index(path)`` round-trip.
Binary indexes take packed ``uint8`` codes (``ceil(bits/8)`` bytes per row, first bit
the most significant, as ``numpy.packbits`` writes them); any code length works: the
bits past ``dim`` in the last byte are padding, set to zero on the way in, so they never
change a Hamming distance.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import save_npz
from deephash.growing import GrowingArray


class SearchResult(NamedTuple):
    distances: np.ndarray  # (Q, k)
    ids: np.ndarray  # (Q, k) int64, -1 where no result


class RetrievalIndex(abc.ABC):
    """Base class; subclasses hold vectors and implement ``_search``."""

    factory: str = ""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids = np.empty(0, dtype=np.int64)
        self._grown_ids = GrowingArray()  # spare room: an add copies its own ids only

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        vectors = self._check(vectors)
        new_ids = (np.arange(self.ntotal, self.ntotal + len(vectors)) if ids is None
                   else np.asarray(ids, dtype=np.int64))
        if len(new_ids) != len(vectors):
            raise ConfigError(f"{len(vectors)} vectors but {len(new_ids)} ids")
        self._add(vectors)
        self.ids = self._grown_ids.append(self.ids, new_ids)

    def reserve(self) -> None:
        """Move the arrays an add grows into spare room now (one O(N) copy each, which the
        first add would otherwise make; :mod:`deephash.growing`): a server does it at
        load so that every add copies only its own rows."""
        self.ids = self._grown_ids.append(self.ids, self.ids[:0])

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        queries = self._check(queries)
        if k < 1:
            raise ConfigError(f"k must be at least 1 (got {k})")
        distances, positions = self._search(queries, min(k, max(self.ntotal, 1)))
        ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        if distances.shape[1] < k:  # pad to k columns
            pad = k - distances.shape[1]
            distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=-1)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return SearchResult(distances, ids.astype(np.int64))

    @property
    def approximate(self) -> bool:
        """Whether a search may miss some of the true nearest (exact indexes: never)."""
        return False

    @property
    def settings(self) -> dict[str, int]:
        """Search-time settings (``nprobe``, ``efSearch``); an exact index has none."""
        return {}

    def configure(self, *, keep_saved: bool = False, **settings: int | None) -> None:
        """Set search-time settings (``None``: unchanged; ``keep_saved``: not written by a
        later save); an index without them refuses any value in one line."""
        for name, value in settings.items():
            if value is not None:
                raise ConfigError(f"{name} applies to approximate indexes and {self.factory} "
                                  "has none; leave it out")

    def save(self, path: Path) -> None:
        save_npz(Path(path), factory=np.array(self.factory), dim=np.array(self.dim),
                 ids=self.ids, **self._state())

    @abc.abstractmethod
    def _check(self, vectors: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _add(self, vectors: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, k)`` distances and row positions (``-1`` for none)."""

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _restore(self, state: dict[str, np.ndarray]) -> int:
        """Take the stored vectors from a saved ``state``; return how many rows it holds.
        Raises ``ValueError`` for a state that is not this index's (kind, width, dtype)."""


def padded_bits(bits: int) -> int:
    """``bits`` rounded up to whole bytes: the width of a packed code."""
    return 8 * -(-bits // 8)


class BinaryIndex(RetrievalIndex):
    """Base of indexes over packed codes; ``dim`` is the number of bits."""

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, ceil(dim/8))`` uint8 codes, with the padding bits cleared (a copy if any
        was set)."""
        vectors = np.ascontiguousarray(vectors)
        width = padded_bits(self.dim) // 8
        if vectors.dtype != np.uint8 or vectors.ndim != 2 or vectors.shape[1] != width:
            raise ConfigError(f"a {self.dim}-bit index takes packed uint8 codes of shape "
                              f"(n, {width}); got {vectors.dtype} {vectors.shape}")
        keep = np.uint8((0xFF << (padded_bits(self.dim) - self.dim)) & 0xFF)
        if len(vectors) and (vectors[:, -1] & ~keep).any():
            vectors = vectors.copy()
            vectors[:, -1] &= keep
        return vectors

    def candidates(self, queries: np.ndarray, k: int) -> list[np.ndarray] | None:
        """Per packed ``(Q, W)`` query, the ``(M,)`` int64 rows an exact ranking of the
        ``k`` nearest should look at (:class:`deephash.index.rerank.CodeRanker`'s ``rows``),
        or ``None``: every row (an exact index)."""
        return None
