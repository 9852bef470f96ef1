"""Retrieval indexes behind one protocol, built by factory string: ``create_index``.

The protocol is faiss's (``search`` breaks ties in insertion order). The top-k lists of
codes that users see (``search``, ``serve``, ``Searcher``, the gallery) come from
:class:`CodeRanker` (:mod:`deephash.index.rerank`): every item tied at the k-th Hamming
distance considered, ordered by the model's continuous outputs, else at random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import load_npz, npz_array
from deephash.index.base import BinaryIndex, RetrievalIndex, SearchResult
from deephash.index.faiss_indexes import FaissBinaryIndex, FloatIndex
from deephash.index.hamming import HammingIndex
from deephash.index.rerank import CodeRanker, Ranked
from deephash.registries import parse_index


def create_index(factory: str, dim: int) -> RetrievalIndex:
    """``BFlat-numpy`` (ours), ``BFlat``, ``BHNSW<M>``, ``BMIH<h>`` (faiss, binary; ``dim``
    = bits) or ``Flat`` (faiss, float32; ``dim`` = dimension)."""
    parse_index(factory)  # an unknown kind, or an absurd <M>/<h>: one line
    if factory == HammingIndex.factory:
        return HammingIndex(dim)
    if factory == FloatIndex.factory:
        return FloatIndex(dim)
    return FaissBinaryIndex(dim, factory)


#: the widest vectors an index file may declare (a crafted ``dim`` allocates nothing)
MAX_DIM = 1 << 20


def load_index(path: Path) -> RetrievalIndex:
    """The index :meth:`RetrievalIndex.save` wrote to ``path``. Its structure is checked
    before any byte reaches faiss or is trusted: a missing or foreign file, a truncated or
    random one, object arrays, a wrong dtype or shape, or faiss data that does not match the
    declared kind, width and number of ids is a one-line ``ConfigError`` naming the file."""
    try:
        arrays = load_npz(path)
        dim = int(npz_array(arrays, "dim", "iu", 0))
        if not 1 <= dim <= MAX_DIM:
            raise ValueError(f"it declares {dim}-wide vectors")
        ids = np.asarray(npz_array(arrays, "ids", "iu", 1), dtype=np.int64)
        index = create_index(str(npz_array(arrays, "factory", "U", 0)), dim)
        rows = index._restore(arrays)
        if rows != len(ids):
            raise ValueError(f"it stores {rows} vectors for {len(ids)} ids")
    except (OSError, ValueError, RuntimeError, MemoryError, ConfigError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else
                  "faiss cannot read its faiss data (truncated or damaged)"
                  if isinstance(exc, RuntimeError | MemoryError) else str(exc))
        raise ConfigError(f"cannot read index {path}: {reason}; rebuild with deephash "
                          "index") from None
    index.ids = ids
    return index


__all__ = ["BinaryIndex", "CodeRanker", "FaissBinaryIndex", "FloatIndex", "HammingIndex", "Ranked",
           "RetrievalIndex", "SearchResult", "create_index", "load_index"]
