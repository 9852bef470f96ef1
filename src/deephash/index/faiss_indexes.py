"""faiss indexes behind our protocol: exact and sub-linear binary indexes, exact float.

Factory strings: ``BFlat`` (exact, faiss's XOR-popcount scan; ties in insertion order),
``BHNSW<M>`` (a graph over binary codes: sub-linear, approximate), ``BMIH<h>`` (multi-index
hashing with h sub-tables: sub-linear, approximate for k-NN), ``Flat`` (exact float L2
on embeddings; for cosine, add L2-normalised vectors). A code length that is not a
multiple of 8 (12 bits) is served by a faiss index over the padded width (16 bits): the
padding bits are zero in every code, so distances and ties are those of the real bits.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import npz_array
from deephash.index.base import BinaryIndex, RetrievalIndex, padded_bits
from deephash.index.faiss_library import faiss


def _binary_structure(factory: str, dim: int) -> Any:
    """The faiss structure for ``dim``-bit codes, built over their padded width."""
    bits = padded_bits(dim)
    if factory == "BFlat":
        return faiss.IndexBinaryFlat(bits)
    if match := re.fullmatch(r"BHNSW(\d+)", factory):
        return faiss.IndexBinaryHNSW(bits, int(match.group(1)))
    if match := re.fullmatch(r"BMIH(\d+)", factory):
        tables = int(match.group(1))
        if bits % tables or bits // tables > 32:
            padded = f" (padded to {bits})" if bits != dim else ""
            raise ConfigError(f"{factory}: {dim} bits{padded} must split into {tables} equal "
                              "sub-codes of at most 32 bits; choose another number of tables")
        index = faiss.IndexBinaryMultiHash(bits, tables, bits // tables)
        index.nflip = 2
        return index
    raise ConfigError(f"unknown binary index {factory!r}; known: BFlat, BHNSW<M>, BMIH<h>, "
                      "BFlat-numpy")


class _FaissBacked:
    """Storage, search and serialisation delegated to a faiss structure in ``self.index``."""

    index: Any
    factory: str
    _serialize: Any
    _deserialize: Any

    def _add(self, vectors: np.ndarray) -> None:
        self.index.add(vectors)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, positions = self.index.search(queries, k)
        return distances, positions

    def _state(self) -> dict[str, Any]:
        return {"faiss": type(self)._serialize(self.index)}

    def _restore(self, state: dict[str, np.ndarray]) -> int:
        """The faiss structure from its bytes, which must be of the structure the factory
        string builds (``self.index`` before the call) and as wide."""
        blob = npz_array(state, "faiss", "u", 1)
        if blob.dtype != np.uint8:
            raise ValueError(f"its faiss data is {blob.dtype}, not uint8 bytes")
        expected = self.index
        restored = type(self)._deserialize(np.ascontiguousarray(blob))
        if type(restored) is not type(expected) or restored.d != expected.d:
            raise ValueError(f"its faiss data is a {type(restored).__name__} of width "
                             f"{restored.d}, not the {type(expected).__name__} of width "
                             f"{expected.d} that {self.factory} builds")
        self.index = restored
        return int(restored.ntotal)


class FaissBinaryIndex(_FaissBacked, BinaryIndex):
    """A faiss binary index over ``dim``-bit codes (any length; faiss sees them padded to
    whole bytes)."""

    _serialize = staticmethod(faiss.serialize_index_binary)
    _deserialize = staticmethod(faiss.deserialize_index_binary)

    def __init__(self, dim: int, factory: str = "BFlat") -> None:
        super().__init__(dim)
        self.factory = factory
        self.index = _binary_structure(factory, dim)


class FloatIndex(_FaissBacked, RetrievalIndex):
    """Exact Euclidean k-NN over float32 embeddings (faiss ``IndexFlatL2``); distances are
    squared, as faiss returns them."""

    factory = "Flat"
    _serialize = staticmethod(faiss.serialize_index)
    _deserialize = staticmethod(faiss.deserialize_index)

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.index: Any = faiss.IndexFlatL2(dim)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"a {self.dim}-d index takes (n, {self.dim}) vectors; "
                              f"got {vectors.shape}")
        return vectors
