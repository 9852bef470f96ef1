"""One generation of an index folder in memory: its description, items, index, vectors and
(hashing models) the items' continuous outputs.

A state is never changed in place: adding images builds the next state
(:mod:`deephash.service.store`), and a searcher swaps its reference, so a query always sees
one whole generation. The stored vectors (``(N, W)`` packed ``uint8`` codes or ``(N, D)``
float32 embeddings) are kept beside the index so that a query by item id reads its vector
instead of embedding the image again; the ``(N, K)`` float16 continuous outputs
(:mod:`deephash.service.outputs`, ``None`` in folders without them) re-rank Hamming ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.index import HammingIndex, RetrievalIndex, load_index
from deephash.service.folder import INFO, data_files, outputs_file, read_info, verify_checksums
from deephash.service.items import Items
from deephash.service.outputs import load_outputs


def stored_vectors(index: RetrievalIndex) -> np.ndarray:
    """``(ntotal, W)`` the vectors ``index`` holds, in insertion order."""
    if isinstance(index, HammingIndex):
        return index.codes
    structure: Any = index.index  # type: ignore[attr-defined]  # a faiss-backed index
    storage = getattr(structure, "storage", structure)  # MIH and HNSW keep a flat storage
    try:
        return np.asarray(storage.reconstruct_n(0, index.ntotal))
    except RuntimeError:
        return np.asarray(structure.reconstruct_n(0, index.ntotal))


@dataclass(frozen=True)
class IndexState:
    folder: Path
    info: dict[str, Any]
    items: Items
    index: RetrievalIndex
    vectors: np.ndarray  # (N, W): row r is item r's stored code or embedding
    outputs: np.ndarray | None = None  # (N, K) float16 continuous outputs of codes, or None

    @property
    def size(self) -> int:
        return len(self.items)

    @property
    def generation(self) -> int:
        return int(self.info.get("generation", 0))


def load_state(folder: Path, info: dict[str, Any] | None = None) -> IndexState:
    """The current generation of the index folder ``folder`` (``info``: its ``index.json``
    when the caller has read it already)."""
    folder = Path(folder)
    info = read_info(folder) if info is None else info
    index_file, items_file = data_files(info)
    if not (folder / items_file).is_file():
        raise ConfigError(f"{folder} has no {items_file}; rebuild with deephash index")
    verify_checksums(folder, info)  # before numpy or faiss parse a byte of them
    items = Items.load(folder / items_file)
    index = load_index(folder / index_file)
    if index.ntotal != len(items) or not np.array_equal(index.ids, np.arange(len(items))):
        raise ConfigError(f"{folder}: {index_file} holds {index.ntotal} vectors for "
                          f"{len(items)} items; rebuild with deephash index")
    if index.dim != info.get("dim", index.dim) or index.factory != info.get("index",
                                                                            index.factory):
        raise ConfigError(f"{folder}: {index_file} is a {index.factory} index of width "
                          f"{index.dim}, {INFO} says {info.get('index')} of {info.get('dim')}; "
                          "rebuild with deephash index")
    extra = outputs_file(info)
    outputs = None if extra is None else load_outputs(folder / extra, len(items))
    return IndexState(folder, info, items, index, stored_vectors(index), outputs)
