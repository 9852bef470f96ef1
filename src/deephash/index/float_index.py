"""Float embeddings in any faiss index a factory string names: ``Flat`` (exact), or an
approximate one such as ``IVF1024,Flat``, ``IVF4096,PQ32``, ``HNSW32``, ``PQ16``,
``OPQ16,IVF256,PQ16`` (faiss's ``index_factory`` syntax).

The metric is the run's: ``l2`` ranks by squared Euclidean distance (as faiss returns it),
``cosine`` L2-normalises every vector added and every query and ranks by inner product,
reported as the cosine distance ``1 - cos`` so that smaller is nearer under both. Training
and the search settings (``nprobe``, ``efSearch``) are :mod:`deephash.index.approximate`'s;
the metric is saved with them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.index.base import RetrievalIndex
from deephash.index.faiss_indexes import FaissBacked
from deephash.index.faiss_library import faiss

METRICS = {"l2": faiss.METRIC_L2, "cosine": faiss.METRIC_INNER_PRODUCT}
#: faiss structures our positions cannot sit on (they number rows themselves)
_REFUSED = ("IDMap", "IDMap2")


def float_structure(factory: str, dim: int, metric: str = "l2", problem: str = "") -> Any:
    """The faiss structure ``factory`` builds over ``dim``-d vectors; a one-line
    ``ConfigError`` naming the string when faiss cannot build it (``problem``: how the
    error begins; default ``faiss cannot build index F over D-d embeddings``)."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if factory == "Flat":  # the exact index of every version (IndexFlatL2 files stay readable)
        return faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
    if factory.startswith("B") or any(part in factory.split(",") for part in _REFUSED):
        raise ConfigError(f"{problem or f'index {factory!r}'} (not a faiss index over float "
                          "embeddings that numbers its rows itself); use e.g. IVF1024,Flat, "
                          "IVF4096,PQ32, HNSW32 or PQ16")
    try:
        return faiss.index_factory(dim, factory, METRICS[metric])
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].split(": ", 1)[-1]
        problem = problem or f"faiss cannot build index {factory!r} over {dim}-d embeddings"
        raise ConfigError(f"{problem} ({reason}); check the factory string (e.g. IVF1024,Flat, "
                          "IVF4096,PQ32, HNSW32, PQ16; PQ<m> needs m to divide the "
                          "dimension)") from None


def check_float_factory(factory: str) -> None:
    """``ConfigError`` when ``factory`` is no faiss float index whatever the dimension (it
    is built once at a dimension every ``PQ<m>`` of it divides)."""
    splits = [int(m) for m in re.findall(r"PQ(\d+)", factory) if 0 < int(m) <= 1024]
    float_structure(factory, math.lcm(8, *splits),
                    problem=f"unknown index {factory!r}: faiss cannot read it")


class FloatIndex(FaissBacked, RetrievalIndex):
    """k-NN over ``(n, dim)`` float32 embeddings in the faiss index ``factory`` builds,
    under ``metric`` (module docstring)."""

    _serialize = staticmethod(faiss.serialize_index)
    _deserialize = staticmethod(faiss.deserialize_index)

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "l2",
                 train_sample: int | None = None) -> None:
        super().__init__(dim)
        self.factory = factory
        self.metric = metric
        self.train_sample = train_sample
        self.index: Any = float_structure(factory, dim, metric)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"a {self.dim}-d index takes (n, {self.dim}) vectors; "
                              f"got {vectors.shape}")
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return vectors

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, positions = self.index.search(queries, k)
        if self.metric == "cosine":
            distances = np.where(positions >= 0, 1 - distances, distances)
        return distances, positions

    def _saved_settings(self) -> dict[str, Any]:
        return {**super()._saved_settings(), "metric": self.metric}

    def _expected(self, settings: dict[str, Any]) -> Any:
        metric = str(settings.get("metric", "l2"))
        if metric not in METRICS:
            raise ValueError(f"its metric {metric!r} is none of {', '.join(METRICS)}")
        self.metric = metric
        return float_structure(self.factory, self.dim, metric)
