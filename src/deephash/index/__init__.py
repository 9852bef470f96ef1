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
from deephash.index.base import BinaryIndex, RetrievalIndex, SearchResult
from deephash.index.faiss_indexes import FaissBinaryIndex, FloatIndex
from deephash.index.hamming import HammingIndex
from deephash.index.rerank import CodeRanker, Ranked


def create_index(factory: str, dim: int) -> RetrievalIndex:
    """``BFlat-numpy`` (ours), ``BFlat``, ``BHNSW<M>``, ``BMIH<h>`` (faiss, binary; ``dim``
    = bits) or ``Flat`` (faiss, float32; ``dim`` = dimension)."""
    if factory == HammingIndex.factory:
        return HammingIndex(dim)
    if factory == FloatIndex.factory:
        return FloatIndex(dim)
    if factory.startswith("B"):
        return FaissBinaryIndex(dim, factory)
    raise ConfigError(f"unknown index {factory!r}; known: BFlat-numpy, BFlat, BHNSW<M>, "
                      "BMIH<h>, Flat")


def load_index(path: Path) -> RetrievalIndex:
    try:
        state = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read index {path}: {exc}") from None
    index = create_index(str(state["factory"]), int(state["dim"]))
    index._restore(state)
    index.ids = np.asarray(state["ids"], dtype=np.int64)
    return index


__all__ = ["BinaryIndex", "CodeRanker", "FaissBinaryIndex", "FloatIndex", "HammingIndex", "Ranked",
           "RetrievalIndex", "SearchResult", "create_index", "load_index"]
