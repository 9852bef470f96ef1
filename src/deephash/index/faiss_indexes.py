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
    _kept: dict[str, int] | None = None  # the settings saved while an override is on
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

    def configure(self, *, keep_saved: bool = False, **settings: int | None) -> None:
        """Set search-time settings (``nprobe=``, ``efSearch=``; ``None``: unchanged);
        ``keep_saved``: for this process only, a later :meth:`save` writing the settings
        the index had before (a server's override is never written into the folder)."""
        if keep_saved and self._kept is None:
            self._kept = dict(self.settings)
        elif not keep_saved:
            self._kept = None
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
        return dict(self.settings if self._kept is None else self._kept)

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


#: a binary IVF's candidates search for this many times k nearest: ties at the k-th distance
#: that fit there need no second (range) search
TIE_ROOM = 4


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
        """``None`` for ``BFlat``; behind a binary IVF, the rows of the ``nprobe`` lists
        nearest each query that are within its k-th distance there, so the ties at the k-th
        distance among them are all seen, without the rows farther away: faiss's search of
        those lists for the ``TIE_ROOM * k`` nearest, and where ties fill all of them, its
        range search of the same lists; every row of those lists where they hold fewer
        than ``k``. Another approximate index: its own ``k`` nearest."""
        if not self.approximate:
            return None
        queries = self._check(queries)
        if k < 1:
            raise ConfigError(f"k must be at least 1 (got {k})")
        if ivf_lists(self.index) == 0:
            return [found[found >= 0].astype(np.int64) for found in self._search(queries, k)[1]]
        ivf: Any = faiss.downcast_IndexBinary(self.index)
        distances, ids = self._search(queries, TIE_ROOM * k)
        kth = distances[:, k - 1].astype(np.int64)
        short = ids[:, k - 1] < 0  # the lists hold fewer than k rows
        # every tie at d_k was found: a farther row or an empty slot came after them
        seen = ~short & ((distances[:, -1] > kth) | (ids[:, -1] < 0))
        found: dict[int, np.ndarray] = {
            int(q): np.sort(ids[q][(ids[q] >= 0) & (distances[q] <= kth[q])]).astype(np.int64)
            for q in np.flatnonzero(seen)}
        crowded = np.flatnonzero(~short & ~seen)
        if len(crowded):  # one range search for them (faiss's radius is strict), cut per query
            limits, near, rows = ivf.range_search(queries[crowded], int(kth[crowded].max()) + 1)
            for q, start, stop in zip(crowded, limits[:-1], limits[1:], strict=True):
                keep = near[start:stop] <= kth[q]
                found[int(q)] = np.sort(rows[start:stop][keep]).astype(np.int64)
        return [found[q] if q in found else self._probed_rows(ivf, queries[q:q + 1])
                for q in range(len(queries))]

    @staticmethod
    def _probed_rows(ivf: Any, query: np.ndarray) -> np.ndarray:
        """``(M,)`` int64 sorted: every row of the ``nprobe`` lists nearest one ``(1, W)``
        query."""
        invlists = ivf.invlists
        rows = [faiss.rev_swig_ptr(invlists.get_ids(int(i)), invlists.list_size(int(i)))
                for i in ivf.quantizer.search(query, ivf.nprobe)[1][0]
                if i >= 0 and invlists.list_size(int(i))]
        return (np.sort(np.concatenate(rows)).astype(np.int64) if rows
                else np.zeros(0, dtype=np.int64))
