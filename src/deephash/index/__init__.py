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
from deephash.index.faiss_indexes import FaissBinaryIndex
from deephash.index.float_index import FloatIndex
from deephash.index.hamming import HammingIndex
from deephash.index.recall import RecallSample, recall_at_k, recall_by_nprobe, recall_sample
from deephash.index.rerank import CodeRanker, Ranked
from deephash.registries import parse_index


def is_binary(factory: str) -> bool:
    """Whether the index ``factory`` names holds packed codes (``B...``), not floats."""
    return factory.startswith("B")


def create_index(factory: str, dim: int, metric: str = "l2",
                 train_sample: int | None = None) -> RetrievalIndex:
    """``BFlat-numpy`` (ours), ``BFlat``, ``BHNSW<M>``, ``BMIH<h>``, ``BIVF<nlist>`` (faiss,
    binary; ``dim`` = bits) or a faiss factory string over float32 embeddings (``Flat``,
    ``IVF1024,Flat``, ``HNSW32``, ...; ``dim`` = dimension, ``metric`` ``l2`` or
    ``cosine``). ``train_sample``: the most vectors an index that needs training is trained
    on (default :func:`deephash.index.approximate.default_sample`)."""
    parse_index(factory)  # an unknown kind, or an absurd <M>/<h>: one line
    if factory == HammingIndex.factory:
        return HammingIndex(dim)
    if not is_binary(factory):
        return FloatIndex(dim, factory, metric, train_sample)
    index = FaissBinaryIndex(dim, factory)
    index.train_sample = train_sample
    return index


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


__all__ = [
    "BinaryIndex",
    "CodeRanker",
    "FaissBinaryIndex",
    "FloatIndex",
    "HammingIndex",
    "Ranked",
    "RecallSample",
    "RetrievalIndex",
    "SearchResult",
    "create_index",
    "is_binary",
    "load_index",
    "recall_at_k",
    "recall_by_nprobe",
    "recall_sample",
]
