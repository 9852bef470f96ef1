"""A retrieval gallery: the same fixed test queries, and each chosen run's top-k for them.

Runs save their test vectors (``embeddings/query.npz``, ``database.npz``: ``x``, ``y``,
``index``; ``y`` is ``(N,)`` class ids or, for multi-label data, an ``(N, C)`` bool
multi-hot matrix) or packed codes (``codes/*.npz``: ``codes``, ``bits``, and ``relaxed``, the
outputs before the sign); the gallery ranks the database for each query again from those
files and reads the images from the run's data set for thumbnails. Embeddings are ranked
by the run's distance (ties by pool index); codes as the service ranks them
(:class:`deephash.index.rerank.CodeRanker`: Hamming, ties by the relaxed outputs under the
run's training distance, else in a seeded random order, never by pool index). Queries are
drawn once from the pool indices every chosen run queried, by a seeded generator, so every
row of the gallery answers the same images. A result is relevant when it shares a label
with its query (:func:`deephash.labels.relevance`, as the metrics define it).
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deephash.data import ImageDataset, open_dataset
from deephash.data.headers import checked_images
from deephash.distances import as_distance, scoring_distance
from deephash.errors import DeephashError
from deephash.index.rerank import CodeRanker
from deephash.labels import LabelSet, as_label_set, relevance
from deephash.reporting.runs import RunRecord

log = logging.getLogger(__name__)

THUMBNAIL = 64


@dataclass
class Ranked:
    """One run's answers: ``(Q,)`` query pool indices and their label sets (``Q`` rows),
    ``(Q, k)`` result pool indices, the results' label sets (``Q * k`` rows, query by
    query) and ``(Q, k)`` bool ``relevant``: the result shares a label with its query."""

    run: RunRecord
    query: np.ndarray
    query_labels: LabelSet
    results: np.ndarray
    result_labels: LabelSet
    relevant: np.ndarray

    def labels_of(self, q: int) -> list[list[int]]:
        """The class ids of query ``q``'s results, one list per result."""
        k = self.results.shape[1]
        return self.result_labels[slice(q * k, (q + 1) * k)].lists()


def ranked(run: RunRecord, queries: np.ndarray, query_y: np.ndarray, order: np.ndarray,
           database: dict[str, np.ndarray]) -> Ranked:
    """:class:`Ranked` of ``queries`` (saved labels ``query_y``) whose results are the
    database rows ``order`` ``(Q, k)``."""
    query_labels, database_labels = as_label_set(query_y), as_label_set(database["y"])
    relevant = np.take_along_axis(relevance(query_labels, database_labels), order, axis=1)
    return Ranked(run, queries, query_labels, database["index"][order],
                  database_labels[order.ravel()], relevant)


def saved_vectors(run: RunRecord, name: str) -> dict[str, np.ndarray] | None:
    for folder, key in (("codes", "codes"), ("embeddings", "x")):
        path = run.path / folder / f"{name}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                found = {"vectors": data[key], "y": data["y"], "index": data["index"]}
                if "relaxed" in data.files:
                    found["relaxed"] = data["relaxed"]
                return found
    return None


def code_ranker(run: RunRecord, database: dict[str, np.ndarray]) -> CodeRanker:
    """The service's ranking of a code run's saved database codes (``relaxed``, when saved,
    compared with the run's training distance)."""
    training = run.config.get("training", {})
    distance = as_distance(str(training.get("distance", "euclidean")))
    return CodeRanker(database["vectors"], int(run.metrics["bits"]), database.get("relaxed"),
                      distance)


def can_rank(run: RunRecord) -> bool:
    return saved_vectors(run, "query") is not None and saved_vectors(run, "database") is not None


def rank(run: RunRecord, queries: np.ndarray, k: int) -> Ranked:
    """The top ``k`` database items of the pool indices ``queries`` (all queried by
    ``run``)."""
    query, database = saved_vectors(run, "query"), saved_vectors(run, "database")
    assert query is not None and database is not None
    rows = np.searchsorted(query["index"], queries)
    if run.kind == "codes":
        relaxed = query.get("relaxed")
        order = code_ranker(run, database).rank(
            query["vectors"][rows], k, None if relaxed is None else relaxed[rows]).positions
        order = order[:, :min(k, len(database["index"]))]
        return ranked(run, queries, query["y"][rows], order, database)
    distance = scoring_distance(str(run.metrics.get("distance", "cosine")), codes=False)
    distances = distance.evaluation_matrix(
        distance.prepare(torch.from_numpy(query["vectors"][rows])),
        distance.prepare(torch.from_numpy(database["vectors"]))).numpy()
    order = np.lexsort((np.broadcast_to(database["index"], distances.shape), distances),
                       axis=1)[:, :k]
    return ranked(run, queries, query["y"][rows], order, database)


def choose_queries(runs: list[RunRecord], n: int, seed: int) -> np.ndarray:
    """``n`` pool indices that every run queried, drawn by a seeded generator (sorted)."""
    common: np.ndarray | None = None
    for run in runs:
        found = saved_vectors(run, "query")
        if found is not None:
            common = found["index"] if common is None else np.intersect1d(common, found["index"])
    if common is None or len(common) == 0:
        return np.empty(0, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(np.sort(common), min(n, len(common)),
                                                replace=False)
    return np.sort(chosen)


def open_images(run: RunRecord) -> ImageDataset | None:
    """The run's data set, for thumbnails (``None``, with a log line, when it cannot be
    opened here); without the images a ``--skip-bad-images`` run left out, so its pool
    indices are the run's."""
    data = run.config.get("data", {})
    try:
        dataset = open_dataset(data.get("data_dir"), data.get("dataset", "auto"), download=False,
                               image_root=data.get("image_root"))
        return checked_images(dataset, skip=True) if data.get("skip_bad_images") else dataset
    except (DeephashError, OSError) as exc:
        log.warning("gallery without images: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return None


def thumbnail(dataset: ImageDataset, index: int, size: int = THUMBNAIL) -> str:
    """A ``data:image/png;base64,...`` URI of pool image ``index``, its longer side
    ``size`` pixels (small images are enlarged, pixelated)."""
    image = dataset.load_image(int(index))
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return png_uri(buffer.getvalue())


def image_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI."""
    return png_uri(path.read_bytes())


def png_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI (what makes the page self-contained)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
