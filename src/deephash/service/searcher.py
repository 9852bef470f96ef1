"""The one search path of ``deephash search`` and ``deephash serve``, loaded once and warm.

A :class:`Searcher` holds an index folder's current generation (:class:`IndexState`: items,
index, stored vectors and continuous outputs) and the model that built it
(:class:`Embedder`). Queries come as decoded images (embedded in one forward pass per
batch), or as an item id (its stored vector and outputs: nothing is embedded). Results are
hits, best first: an item's record (:meth:`deephash.service.items.Items.describe`: ``{"id",
"label", "class", "labels", "path"}``) with its ``distance`` and ``shares_label``, whether
it shares a label with the query (:func:`deephash.labels.relevance`; ``null`` where the
query's or the hit's labels are unknown: an uploaded image, an unlabelled item). Float
embeddings are ranked by the index (exact L2, ties in insertion order). Codes are ranked by
:class:`deephash.index.rerank.CodeRanker`, the one ranking of every top-k list of codes:
Hamming distance, then (``rerank``) the distance of the continuous outputs, then a
seeded random key, never the pool's order; each answer also says how many items tie at
the k-th result's distance (:class:`Answer`). Behind an approximate binary index (``BIVF``:
the rows of its ``nprobe`` nearest lists within the k-th distance there) the ranker sees
only the rows the index proposes (:meth:`deephash.index.base.BinaryIndex.candidates`), and
the ties are counted among them. At most ``forward_slots`` forward passes run at once (the
server gives one per core, each pass on one thread); an index search runs on the calling
thread alone (faiss's OpenMP team costs more than a query's scan: 24 ms against 0.1 ms for
one query on 50,000 48-bit codes, two busy cores). Adds are serialised: each writes one
append segment (O(batch) on disk, :mod:`deephash.service.segments`), then, holding the
readers-writer lock (:mod:`deephash.service.rwlock`) exclusively, adds the batch to the
live index and swaps in the new state, so a concurrent query sees the items before or after
it. When the segments exceed ``compaction`` (items, bytes), they are folded into the next
generation (:func:`deephash.service.store.compact`) while searches keep answering.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from deephash.data.decode import open_rgb
from deephash.distances import as_distance
from deephash.errors import DeephashError
from deephash.index.faiss_library import faiss
from deephash.index.rerank import CodeRanker, Rerank
from deephash.labels import LabelSet
from deephash.service.embedder import Embedder, Query, vectors_of_outputs
from deephash.service.errors import ApiError
from deephash.service.folder import check_fits, checkpoint_path, item_root, locate, read_info
from deephash.service.rwlock import RWLock
from deephash.service.state import IndexState, grown, load_state, with_spare_room
from deephash.service.store import ADDED, COMPACTION, append_images, compact, due
from deephash.training.checkpoint import load_model
from deephash.training.config import TrainConfig

Hit = dict[str, Any]
log = logging.getLogger(__name__)


def _row(labels: LabelSet | None, q: int) -> LabelSet | None:
    """Query ``q``'s label set (one row), or ``None``."""
    return None if labels is None else labels[np.array([q])]


class Answer(NamedTuple):
    """One query's ``hits``, best first, and for codes ``ties``: ``{"distance": d_k,
    "count": items at d_k, "shown": how many of them are among the hits, "order":
    "continuous outputs" or "random"}`` (``None`` for float embeddings)."""

    hits: list[Hit]
    ties: dict[str, Any] | None


@contextlib.contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Run the block with the calling thread's OpenMP team at one thread, then restore it:
    faiss and torch share the OpenMP runtime, so leaving it at 1 would slow (and change the
    float sums of) every later torch operation of this thread in the process."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class Searcher:
    """Search an index folder with the model that built it; see the module docstring."""

    def __init__(self, state: IndexState, embedder: Embedder, checkpoint: Path,
                 train_config: TrainConfig, forward_slots: int = 1,
                 rerank: Rerank = "ties", compaction: tuple[int, int] = COMPACTION,
                 settings: dict[str, int | None] | None = None) -> None:
        self.settings = dict(settings or {})  # nprobe, efSearch over the index's saved ones
        state.index.configure(keep_saved=True, **self.settings)  # never written at compaction
        self._state = state
        self.compaction = compaction
        self._lock = RWLock()
        self.embedder = embedder
        self.checkpoint = checkpoint
        self.train_config = train_config
        self.rerank = rerank
        self.root = item_root(state.folder, state.info)
        self._forward_slots = threading.BoundedSemaphore(forward_slots)
        self._add_lock = threading.Lock()
        self._dataset: Any = None
        self._ranked: tuple[IndexState, CodeRanker] | None = None
        if self.codes:
            self._ranker(state)  # built before the first query

    @classmethod
    def open(cls, folder: Path, checkpoint: str | None = None,
             forward_slots: int = 1, rerank: Rerank = "ties",
             compaction: tuple[int, int] = COMPACTION,
             settings: dict[str, int | None] | None = None) -> Searcher:
        """Load the folder's current generation and its model (``checkpoint`` overrides the
        one ``index.json`` names); ``rerank``: how code ties are ordered
        (:func:`deephash.registries.parse_rerank`); ``settings``: search-time settings of an
        approximate index (``nprobe``, ``efSearch``; ``None``: as saved with it)."""
        # the checkpoint first: a crafted one is refused before anything else is read
        info = read_info(Path(folder))
        path = checkpoint_path(Path(folder), info, checkpoint)
        train_config, model = load_model(path)
        state = with_spare_room(load_state(Path(folder), info))  # adds then O(batch)
        check_fits(train_config.training.codes, train_config.training.embedding_dim,
                   state.info, path)
        return cls(state, Embedder(train_config, model, state.info["spec"]), path, train_config,
                   forward_slots, rerank, compaction, settings)

    @property
    def state(self) -> IndexState:
        return self._state

    @property
    def codes(self) -> bool:
        return bool(self._state.info["codes"])

    def outputs(self, images: Sequence[Query]) -> np.ndarray:
        """``(len(images), D)`` model outputs, one forward pass (per view) for the batch."""
        with self._forward_slots:
            return self.embedder.outputs(images)

    def embed(self, images: Sequence[Query]) -> np.ndarray:
        """``(len(images), W)`` vectors (packed codes or embeddings) of the images."""
        return vectors_of_outputs(self.outputs(images), self.codes)

    def answer_images(self, images: Sequence[Query], k: int, radius: int | None = None,
                      labels: LabelSet | None = None) -> list[Answer]:
        """The answer of each RGB image, in order (``labels``: the images' label sets, when
        known)."""
        outputs = self.outputs(images)
        return self.answer_vectors(vectors_of_outputs(outputs, self.codes), k, radius,
                                   outputs=outputs, labels=labels)

    def answer_item(self, item: int, k: int, radius: int | None = None
                    ) -> tuple[dict[str, Any], Answer]:
        """Item ``item``'s record and the answer of its stored vector and outputs (itself
        among the hits; each hit says whether it shares a label with the item)."""
        with self._lock.reading():
            state = self._state
            self._check_id(state, item)
            outputs = None if state.outputs is None else state.outputs[item:item + 1]
            labels = state.items.labels[np.array([item])]
            return (state.items.describe(item),
                    self._answer(state.vectors[item:item + 1], k, radius, state, outputs,
                                 labels)[0])

    def answer_vectors(self, vectors: np.ndarray, k: int, radius: int | None = None,
                       state: IndexState | None = None, outputs: np.ndarray | None = None,
                       labels: LabelSet | None = None) -> list[Answer]:
        """The answers of ``(Q, W)`` query vectors (``(Q, D)`` continuous ``outputs`` of
        codes re-rank their ties): the ``k`` nearest, and with ``radius`` (codes only) only
        those within that Hamming distance; ``labels``: the queries' label sets, when known
        (the hits' ``shares_label``); ``state``: a state of this searcher, the current
        one by default."""
        with self._lock.reading():
            return self._answer(vectors, k, radius, state or self._state, outputs, labels)

    def _answer(self, vectors: np.ndarray, k: int, radius: int | None, state: IndexState,
                outputs: np.ndarray | None, labels: LabelSet | None) -> list[Answer]:
        """:meth:`answer_vectors`, the read lock held."""
        self.check_radius(radius)
        if labels is not None and len(labels) != len(vectors):
            raise ValueError(f"{len(labels)} label sets for {len(vectors)} queries")
        if not self.codes:
            with one_openmp_thread():
                result = state.index.search(vectors, k)
            return [Answer(self._hits(state, d, i, radius, _row(labels, q)), None)
                    for q, (d, i) in enumerate(zip(result.distances, result.ids, strict=True))]
        ranker = self._ranker(state)
        with one_openmp_thread():
            rows = state.index.candidates(vectors, k)  # type: ignore[attr-defined]
            ranked = ranker.rank(vectors, k, outputs, rows)
        order = "continuous outputs" if ranker.reranks(outputs) else "random"
        return [Answer(self._hits(state, ranked.distances[q], ranked.positions[q], radius,
                                  _row(labels, q)),
                       {"distance": int(ranked.tie_distance[q]), "count": int(ranked.tied[q]),
                        "shown": int(ranked.tied_shown[q]), "order": order})
                for q in range(len(vectors))]

    @staticmethod
    def _hits(state: IndexState, distances: np.ndarray, ids: np.ndarray,
              radius: int | None, query: LabelSet | None) -> list[Hit]:
        """The hits among ``ids`` (within ``radius``); ``query``: the one query's labels."""
        keep = (ids >= 0) & (distances <= radius if radius is not None else True)
        found = ids[keep].astype(np.int64)
        shared = ([None] * len(found) if query is None
                  else state.items.shares_label(query, found))
        return [{**state.items.describe(int(i)), "distance": float(d), "shares_label": s}
                for d, i, s in zip(distances[keep], found, shared, strict=True)]

    def _ranker(self, state: IndexState, grown_from: IndexState | None = None) -> CodeRanker:
        """The ranker of ``state``'s codes (built once per generation; ``grown_from``: the
        state ``state`` was grown from, whose ranker is extended by the new codes)."""
        ranked = self._ranked
        if ranked is not None and grown_from is not None and ranked[0] is grown_from:
            ranked = (state, ranked[1].extended(state.vectors[grown_from.size:], state.outputs))
            self._ranked = ranked
        elif ranked is None or ranked[0] is not state:
            distance = as_distance(self.train_config.training.distance)
            ranked = (state, CodeRanker(state.vectors, int(state.info["dim"]), state.outputs,
                                        distance, self.rerank).with_spare_room())
            self._ranked = ranked
        return ranked[1]

    def search_images(self, images: Sequence[Query], k: int,
                      radius: int | None = None) -> list[list[Hit]]:
        """The hits of each RGB image, in order (:meth:`answer_images` without the ties)."""
        return [answer.hits for answer in self.answer_images(images, k, radius)]

    def search_item(self, item: int, k: int, radius: int | None = None
                    ) -> tuple[dict[str, Any], list[Hit]]:
        """Item ``item``'s record and its hits (:meth:`answer_item` without the ties)."""
        record, answer = self.answer_item(item, k, radius)
        return record, answer.hits

    def search_vectors(self, vectors: np.ndarray, k: int, radius: int | None = None,
                       state: IndexState | None = None, outputs: np.ndarray | None = None,
                       labels: LabelSet | None = None) -> list[list[Hit]]:
        """The hits of ``(Q, W)`` query vectors (:meth:`answer_vectors` without the ties)."""
        return [answer.hits for answer in self.answer_vectors(vectors, k, radius, state,
                                                               outputs, labels)]

    def check_radius(self, radius: int | None) -> None:
        if radius is None:
            return
        if not self.codes:
            raise ApiError(422, "radius is a Hamming distance and this index holds float "
                                "embeddings; search without radius")
        bits = int(self._state.info["dim"])
        if not 0 <= radius <= bits:
            raise ApiError(422, f"radius must be between 0 and {bits} (the code length); got "
                                f"{radius}")

    def item(self, item: int) -> dict[str, Any]:
        state = self._state
        self._check_id(state, item)
        return state.items.describe(item)

    @staticmethod
    def _check_id(state: IndexState, item: int) -> None:
        if not 0 <= item < state.size:
            raise ApiError(404, f"no item {item}: ids run from 0 to {state.size - 1}; pick an "
                                "id from a search result")

    def add(self, images: Sequence[Query], encoded: Sequence[tuple[bytes, str]],
            labels: Sequence[str] | str | None) -> list[dict[str, Any]]:
        """Add decoded ``images`` (their ``encoded`` bytes and file extension are kept in
        the folder), each labelled with ``labels`` (class names or numbers, a new name
        making a new class; one label as a string; ``None`` or none: unlabelled), persist
        them and return their records."""
        given = [labels] if isinstance(labels, str) else list(labels or [])
        outputs = self.outputs(images)
        with self._add_lock:
            state = self._state
            numbers, classes = state.items.labels_of(given)
            segment, nbytes = append_images(state, vectors_of_outputs(outputs, self.codes),
                                            list(encoded), numbers, classes,
                                            outputs if self.codes else None)
            with self._lock.writing():  # the live index grows: no search reads it meanwhile
                added = grown(state, segment, nbytes)
                if self.codes:
                    self._ranker(added, state)  # ready before the new state answers
                self._state = added
            if due(added, *self.compaction):
                self._compact(added)
            return [added.items.describe(i) for i in range(state.size, added.size)]

    def _compact(self, state: IndexState) -> None:
        """Fold ``state``'s segments into the next generation (the add lock held; searches
        go on); a failure is logged, the appended items being committed already."""
        try:
            compacted = compact(state)
        except (OSError, DeephashError) as exc:
            log.warning("compacting %s failed (%s); its append segments stay and are "
                        "compacted after a later add", state.folder, exc)
            return
        with self._lock.writing():
            ranked = self._ranked
            if ranked is not None and ranked[0] is state:
                self._ranked = (compacted, ranked[1])  # the same codes: no new ranker
            self._state = compacted

    def full_path(self, hit: dict[str, Any]) -> str:
        """The hit's image path on this machine (as indexed where its root is unknown)."""
        if self._state.items.local[hit["id"]]:
            return str(self._state.folder.resolve() / hit["path"])
        return hit["path"] if self.root is None else str(self.root / hit["path"])

    def image(self, item: int) -> Image.Image:
        """Item ``item``'s image, RGB; ``ApiError`` 404 when its file cannot be read."""
        state = self._state
        self._check_id(state, item)
        try:
            if not state.items.local[item] and "data_dir" in state.info:  # a data set's row
                return self._data_set().load_image(item)
            return open_rgb(self.image_file(item))
        except ApiError:
            raise
        except DeephashError as exc:  # the log has the server's paths, the answer does not
            log.warning("the image of item %d is not available: %s", item, exc)
            raise ApiError(404, f"the image of item {item} is not available on the server "
                                "(moved, deleted or unreadable; the server's log names it); "
                                "search from another item") from None

    def image_file(self, item: int) -> Path:
        """Item ``item``'s image file, inside the data root (an added image: inside the
        index folder's ``added/``); ``ApiError`` 404 for a path that would leave it — an
        absolute path or ``..`` (an altered ``items.npz``), or an index folder that records
        no data root (written before relative paths: rebuild it)."""
        items = self._state.items
        local = bool(items.local[item])
        root = self._state.folder.resolve() if local else self.root
        path = PurePath(str(items.paths[item]))
        inside = root is not None and not path.is_absolute() and ".." not in path.parts and (
            not local or (len(path.parts) > 1 and path.parts[0] == ADDED))
        if not inside:
            raise ApiError(404, f"the image of item {item} is outside the index's data root "
                                "(an altered or old items.npz); rebuild the index folder with "
                                "deephash index")
        assert root is not None
        return root / path

    def _data_set(self) -> Any:
        """The indexed data set, for items that are a data set's rows (CIFAR-10, a pack)."""
        if self._dataset is None:
            info = self._state.info
            found = locate(self._state.folder, info, "data_dir")
            if found is None:
                raise DeephashError(f"its data set {info['data_dir']} is not there any more")
            from deephash.data import open_dataset

            self._dataset = open_dataset(str(found), "auto", download=False)
        return self._dataset
