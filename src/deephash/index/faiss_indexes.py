"""faiss indexes behind our protocol: exact and sub-linear binary indexes (float ones:
:mod:`deephash.index.float_index`).

Factory strings: ``BFlat`` (exact, faiss's XOR-popcount scan; ties in insertion order),
``BHNSW<M>`` (a graph over binary codes: sub-linear, approximate), ``BMIH<h>`` (multi-index
hashing with h sub-tables: sub-linear, approximate for k-NN), ``BIVF<nlist>`` (binary IVF:
codes bucketed by their nearest of nlist centroids, ``nprobe`` buckets scanned per query;
trained on a sample, :mod:`deephash.index.approximate`). A code length that is not a
multiple of 8 (12 bits) is served by a faiss index over the padded width (16 bits): the
padding bits are zero in every code, so distances and ties are those of the real bits.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import npz_array
from deephash.index.approximate import (
    applicable,
    apply_settings,
    ivf_lists,
    parse_settings,
    read_settings,
    settings_json,
    train,
)
from deephash.index.base import BinaryIndex, padded_bits
from deephash.index.faiss_library import faiss


def _binary_structure(factory: str, dim: int) -> Any:
    """The faiss structure for ``dim``-bit codes, built over their padded width."""
    bits = padded_bits(dim)
    if factory == "BFlat":
        return faiss.IndexBinaryFlat(bits)
    if match := re.fullmatch(r"BHNSW(\d+)", factory):
        return faiss.IndexBinaryHNSW(bits, int(match.group(1)))
    if match := re.fullmatch(r"BIVF(\d+)", factory):
        return faiss.index_binary_factory(bits, factory)
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
                      "BIVF<nlist>, BFlat-numpy")


class FaissBacked:
    """Storage, search and serialisation delegated to a faiss structure in ``self.index``;
    an untrained structure is trained on the first vectors added (at most ``train_sample``
    of them, :func:`deephash.index.approximate.train`); its search settings are saved."""

    index: Any
    factory: str
    train_sample: int | None = None
    _serialize: Any
    _deserialize: Any

    def _add(self, vectors: np.ndarray) -> None:
        if not self.index.is_trained:
            train(self.index, vectors, self.factory, self.train_sample)
        self.index.add(vectors)

    @property
    def approximate(self) -> bool:
        """Whether a search may miss some of the true nearest (anything but a flat scan)."""
        return self.factory not in ("Flat", "BFlat")

    @property
    def settings(self) -> dict[str, int]:
        """The search-time settings (``nprobe``, ``efSearch``) the structure has, now."""
        return read_settings(self.index)

    def configure(self, **settings: int | None) -> None:
        """Set search-time settings (``nprobe=``, ``efSearch=``; ``None``: unchanged)."""
        apply_settings(self.index, self.factory, settings)

    def _expected(self, settings: dict[str, Any]) -> Any:
        """The structure the factory string builds under the saved ``settings``."""
        return self.index

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, positions = self.index.search(queries, k)
        return distances, positions

    def _state(self) -> dict[str, Any]:
        return {"faiss": type(self)._serialize(self.index),
                "settings": settings_json(self._saved_settings())}

    def _saved_settings(self) -> dict[str, Any]:
        return dict(self.settings)

    def _restore(self, state: dict[str, np.ndarray]) -> int:
        """The faiss structure from its bytes, which must be of the structure the factory
        string builds (``self.index`` before the call) and as wide."""
        blob = npz_array(state, "faiss", "u", 1)
        if blob.dtype != np.uint8:
            raise ValueError(f"its faiss data is {blob.dtype}, not uint8 bytes")
        settings = (parse_settings(str(npz_array(state, "settings", "U", 0)))
                    if "settings" in state else {})
        expected = self._expected(settings)
        restored = type(self)._deserialize(np.ascontiguousarray(blob))
        if (type(restored) is not type(expected) or restored.d != expected.d
                or getattr(restored, "metric_type", 0) != getattr(expected, "metric_type", 0)):
            raise ValueError(f"its faiss data is a {type(restored).__name__} of width "
                             f"{restored.d}, not the {type(expected).__name__} of width "
                             f"{expected.d} that {self.factory} builds")
        self.index = restored
        apply_settings(restored, self.factory, {name: settings.get(name)
                                                for name in applicable(restored)})
        return int(restored.ntotal)


class FaissBinaryIndex(FaissBacked, BinaryIndex):
    """A faiss binary index over ``dim``-bit codes (any length; faiss sees them padded to
    whole bytes)."""

    _serialize = staticmethod(faiss.serialize_index_binary)
    _deserialize = staticmethod(faiss.deserialize_index_binary)

    def __init__(self, dim: int, factory: str = "BFlat") -> None:
        super().__init__(dim)
        self.factory = factory
        self.index = _binary_structure(factory, dim)

    def candidates(self, queries: np.ndarray, k: int) -> list[np.ndarray] | None:
        """``None`` for ``BFlat``; a binary IVF's rows in the ``nprobe`` lists nearest each
        query (all of them, so the ties at the k-th distance among them are all seen);
        another approximate index's own ``k`` nearest."""
        if not self.approximate:
            return None
        queries = self._check(queries)
        if ivf_lists(self.index) == 0:
            return [ids[ids >= 0].astype(np.int64) for ids in self._search(queries, k)[1]]
        ivf: Any = faiss.downcast_IndexBinary(self.index)
        lists = ivf.quantizer.search(queries, ivf.nprobe)[1]
        invlists = ivf.invlists
        found = []
        for probed in lists:
            rows = [faiss.rev_swig_ptr(invlists.get_ids(int(i)), invlists.list_size(int(i)))
                    for i in probed if i >= 0 and invlists.list_size(int(i))]
            found.append(np.sort(np.concatenate(rows)).astype(np.int64) if rows
                         else np.zeros(0, dtype=np.int64))
        return found
