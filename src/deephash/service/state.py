"""One generation of an index folder in memory: its description, items, index, vectors and
(hashing models) the items' continuous outputs.

A state is never changed in place, except its index: adding images builds the next state
(:func:`grown`: the index gets ``add()`` of the batch, the other arrays are new) and a
searcher swaps its reference under its readers-writer lock (:mod:`deephash.service.rwlock`),
so a query always sees the items before or after an add. A state is its generation's base
files followed by its append segments (:mod:`deephash.service.segments`).

The stored vectors (``(N, W)`` packed ``uint8`` codes or ``(N, D)``
float32 embeddings) are kept beside the index so that a query by item id reads its vector
instead of embedding the image again; the ``(N, K)`` float16 continuous outputs
(:mod:`deephash.service.outputs`, ``None`` in folders without them) re-rank Hamming ties.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.folders import added_path
from deephash.growing import Growth
from deephash.index import HammingIndex, RetrievalIndex, load_index
from deephash.service.folder import INFO, data_files, outputs_file, read_info, verify_checksums
from deephash.service.items import Items
from deephash.service.outputs import load_outputs
from deephash.service.segments import Segment, load_segment, segment_files


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
    segments: int = 0  # append segments after the generation's base files
    segment_items: int = 0  # items they hold
    segment_bytes: int = 0  # their size on disk
    growth: Growth = field(default_factory=Growth, compare=False, repr=False)  # spare room

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
    state = IndexState(folder, info, items, index, stored_vectors(index), outputs)
    for path in segment_files(folder, state.generation):
        segment = load_segment(path)
        if segment.start != state.size or (segment.outputs is None) != (outputs is None):
            raise ConfigError(f"{path} starts at item {segment.start} (the folder has "
                              f"{state.size}) or does not match its outputs; delete it "
                              "(losing that add) or rebuild with deephash index")
        state = grown(state, segment, path.stat().st_size)
    return state


def with_spare_room(state: IndexState) -> IndexState:
    """``state`` (its index shared) with every array an add grows moved into spare room:
    ``state.growth``'s buffers and the index's own (:mod:`deephash.growing`). That copies
    each array once, O(N), here: a server does it when it loads a folder, so that the first
    add copies only its own rows, as every later one does (at 10M codes, 2–4 s moved from
    the first add to the start: ``bench_scale.py --appends-only``)."""
    growth = state.growth
    state.index.reserve()
    outputs = (None if state.outputs is None
               else growth.append("outputs", state.outputs, state.outputs[:0]))
    longest = len(added_path(10 * state.size + 10, "jpeg"))  # added images' paths fit
    return dataclasses.replace(state, items=state.items.with_spare_room(growth, longest),
                               vectors=growth.append("vectors", state.vectors,
                                                     state.vectors[:0]), outputs=outputs)


def grown(state: IndexState, segment: Segment, nbytes: int) -> IndexState:
    """``state`` followed by ``segment`` (written in ``nbytes`` on disk): its vectors are
    added to ``state``'s index (shared: ``state`` must no longer be searched), the other
    arrays are longer views of ``state.growth``'s buffers (O(batch): ``state``'s views keep
    their rows, :mod:`deephash.growing`)."""
    ids = np.arange(state.size, state.size + len(segment), dtype=np.int64)
    try:
        items = state.items.joined(segment.items, state.growth)
    except ValueError as exc:
        raise ConfigError(f"{state.folder}: an append segment at item {state.size}: {exc}; "
                          "rebuild with deephash index") from None
    growth = state.growth
    vectors = growth.append("vectors", state.vectors, segment.vectors)
    outputs = (None if state.outputs is None or segment.outputs is None
               else growth.append("outputs", state.outputs, segment.outputs))
    state.index.add(segment.vectors, ids=ids)
    return IndexState(state.folder, state.info, items, state.index, vectors, outputs,
                      state.segments + 1, state.segment_items + len(segment),
                      state.segment_bytes + nbytes, growth)
