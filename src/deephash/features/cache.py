"""On-disk feature cache, keyed by everything that changes the features.

An entry is a folder ``<root>/features/<digest>/`` holding ``key.json`` (the full key)
and ``features.npy`` (``(N, D)`` float32, one row per pool index). ``features.npy`` is
written atomically and last, so an interrupted run never leaves an entry that reads as
valid. While an entry is being computed, finished shards of ``shard_size`` images sit in
``shards/``; a rerun resumes from them and deletes them once ``features.npy`` exists.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deephash.fileio import save_json, save_npy

#: Bump when a code change alters extracted features, so old entries stop matching.
FEATURE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureKey:
    """What determines a feature matrix."""

    backbone: str
    weights: str
    transform: dict[str, Any]
    dataset: str
    n_images: int
    dim: int
    version: int = field(default=FEATURE_FORMAT_VERSION)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as stored

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


ComputeRows = Callable[[np.ndarray], np.ndarray]


class FeatureCache:
    """Get-or-compute feature matrices under a cache root."""

    def __init__(self, root: Path, shard_size: int = 4096) -> None:
        self.root = Path(root)
        self.shard_size = shard_size

    def entry(self, key: FeatureKey) -> Path:
        return self.root / "features" / key.digest()

    def load(self, key: FeatureKey) -> np.ndarray | None:
        """The cached matrix, or ``None`` when absent, incomplete or not matching ``key``."""
        folder = self.entry(key)
        try:
            stored = json.loads((folder / "key.json").read_text())
            if stored != key.as_dict():
                return None
            features = np.load(folder / "features.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if features.shape != (key.n_images, key.dim) or features.dtype != np.float32:
            return None
        return features

    def get_or_compute(self, key: FeatureKey, compute: ComputeRows,
                       on_resume: Callable[[int], object] | None = None) -> np.ndarray:
        """Cached features for ``key``, computing the missing shards with ``compute``.

        ``compute(indices)`` returns the ``(len(indices), dim)`` rows of those pool indices.
        ``on_resume(n)`` is told how many rows were recovered from an earlier, interrupted run.
        """
        cached = self.load(key)
        if cached is not None:
            return cached
        folder = self.entry(key)
        shards = folder / "shards"
        shards.mkdir(parents=True, exist_ok=True)
        save_json(folder / "key.json", key.as_dict())
        parts = []
        for number, start in enumerate(range(0, key.n_images, self.shard_size)):
            indices = np.arange(start, min(start + self.shard_size, key.n_images))
            path = shards / f"{number:05d}.npy"
            rows = self._load_shard(path, len(indices), key.dim)
            if rows is not None:
                if on_resume is not None:
                    on_resume(len(rows))
            else:
                rows = np.ascontiguousarray(compute(indices), dtype=np.float32)
                save_npy(path, rows)
            parts.append(rows)
        features = np.concatenate(parts) if parts else np.empty((0, key.dim), np.float32)
        save_npy(folder / "features.npy", features)
        shutil.rmtree(shards, ignore_errors=True)
        return features

    @staticmethod
    def _load_shard(path: Path, n: int, dim: int) -> np.ndarray | None:
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return rows if rows.shape == (n, dim) and rows.dtype == np.float32 else None
