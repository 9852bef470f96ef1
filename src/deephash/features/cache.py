"""On-disk feature cache, keyed by everything that changes the features.

An entry is a folder ``<root>/features/<digest>/`` holding ``key.json`` (the full key)
and ``features.npy`` (``(N, D)`` float32, one row per pool index). ``features.npy`` is
written atomically and last, so an interrupted run never leaves an entry that reads as
valid. While an entry is being computed, finished shards of ``shard_size`` images sit in
``shards/``; a rerun resumes from them and deletes them once ``features.npy`` exists.
Several views of the same images (:meth:`FeatureCache.get_or_compute_views`) are computed
together, shard by shard, each into its own entry. Under torchrun the ranks share the
shards (shard ``i`` by rank ``i mod W``, :mod:`deephash.distributed`) and rank 0 joins
them, so ``--cache-dir`` must be a folder every rank sees. Entries are read memory-mapped and
read-only: a 60,000 x 1280 pool costs no copy until rows are used.

What is *not* in the key: the device and the runtime that computed the features. The
cache promises that its content does not depend on them: float32 features of PyTorch on
the CPU, on CUDA (with TF32 off) and of the float32 runtimes (OpenVINO, ONNX Runtime)
agree within 1e-5 relative (2e-6 to 8e-6 measured on CIFAR-10 at 32-224 px, held to 1e-5
by tests/test_runtimes.py), the size of float32 summation-order noise and far below
anything retrieval can see, so they share one entry and a pool extracted once serves every
runtime. A reduced precision changes the features (``bf16``: by up to ~0.2 of their scale,
cosine similarity 0.998 to float32 on average), so it is part of the key; float32 keys
leave the field out, so that entries written before runtimes existed still match.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deephash.distributed import barrier, ranks
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
    precision: str = "fp32"

    def as_dict(self) -> dict[str, Any]:
        data = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as stored
        if data["precision"] == "fp32":
            del data["precision"]  # float32 keys as before runtimes existed
        return dict(data)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


ComputeRows = Callable[[np.ndarray], np.ndarray]
#: ``compute(indices, views)`` -> ``{view: (len(indices), dim) rows}``
ComputeViews = Callable[[np.ndarray, tuple[str, ...]], Mapping[str, np.ndarray]]


class FeatureCache:
    """Get-or-compute feature matrices under a cache root."""

    def __init__(self, root: Path, shard_size: int = 4096) -> None:
        self.root = Path(root)
        self.shard_size = shard_size

    def entry(self, key: FeatureKey) -> Path:
        return self.root / "features" / key.digest()

    def load(self, key: FeatureKey) -> np.ndarray | None:
        """The cached matrix, memory-mapped read-only, or ``None`` when absent, incomplete
        or not matching ``key``."""
        folder = self.entry(key)
        try:
            stored = json.loads((folder / "key.json").read_text())
            if stored != key.as_dict():
                return None
            features = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
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
        return self.get_or_compute_views(
            {"": key}, lambda indices, _views: {"": compute(indices)}, on_resume)[""]

    def get_or_compute_views(self, keys: Mapping[str, FeatureKey], compute: ComputeViews,
                             on_resume: Callable[[int], object] | None = None
                             ) -> dict[str, np.ndarray]:
        """Cached features of several views of the same pool (``{view: key}``).

        Shard by shard, ``compute(indices, views)`` is asked for the views whose shard is
        missing, all at once (one decode of the images serves them all); each view is
        stored in its own entry. ``on_resume(n)`` is told of ``n`` rows found (in shards
        or whole entries) instead of computed. Across ranks, each computes its turns of the
        shards; every rank must call.
        """
        found = {view: self.load(key) for view, key in keys.items()}
        out = {view: rows for view, rows in found.items() if rows is not None}
        missing = {view: key for view, key in keys.items() if view not in out}
        if not missing:
            return out
        if on_resume is not None and out:
            on_resume(sum(len(rows) for rows in out.values()))
        first = next(iter(missing.values()))
        if any((k.n_images, k.dim) != (first.n_images, first.dim) for k in missing.values()):
            raise ValueError("views computed together must have the same number of images "
                             "and dimension")
        for key in missing.values():
            (self.entry(key) / "shards").mkdir(parents=True, exist_ok=True)
            save_json(self.entry(key) / "key.json", key.as_dict())
        group = ranks()
        starts = range(0, first.n_images, self.shard_size)
        parts: dict[str, dict[int, np.ndarray]] = {view: {} for view in missing}
        for number, start in enumerate(starts):
            if not group.owns(number):
                continue
            indices = np.arange(start, min(start + self.shard_size, first.n_images))
            paths = {view: self._shard_path(key, number) for view, key in missing.items()}
            shard = {view: self._load_shard(path, len(indices), first.dim)
                     for view, path in paths.items()}
            todo = tuple(view for view, rows in shard.items() if rows is None)
            if on_resume is not None and len(todo) < len(shard):
                on_resume(len(indices) * (len(shard) - len(todo)))
            computed = compute(indices, todo) if todo else {}
            for view in missing:
                rows = shard[view]
                if rows is None:
                    rows = np.ascontiguousarray(computed[view], dtype=np.float32)
                    if rows.shape != (len(indices), first.dim):
                        raise ValueError(f"computed {rows.shape} features for {len(indices)} "
                                         f"images of dimension {first.dim}")
                    save_npy(paths[view], rows)
                parts[view][number] = rows
        barrier()  # every rank's shards are written
        for view, key in missing.items() if group.main else ():
            rows_of = [parts[view].get(number) for number in range(len(starts))]
            for number, start in enumerate(starts):
                if rows_of[number] is None:  # another rank's
                    rows_of[number] = self._load_shard(
                        self._shard_path(key, number),
                        min(self.shard_size, first.n_images - start), first.dim)
            if any(rows is None for rows in rows_of):
                raise OSError(f"feature cache {self.entry(key)}: another process's shard is "
                              "missing; give every rank the same --cache-dir")
            features = (np.concatenate(rows_of) if rows_of  # type: ignore[arg-type]
                        else np.empty((0, key.dim), np.float32))
            save_npy(self.entry(key) / "features.npy", features)
            shutil.rmtree(self.entry(key) / "shards", ignore_errors=True)
        barrier()  # rank 0 has joined them
        for view, key in missing.items():
            loaded = self.load(key)
            if loaded is None:
                raise OSError(f"feature cache entry {self.entry(key)} cannot be read back "
                              "after writing it; check the disk")
            out[view] = loaded
        return {view: out[view] for view in keys}

    def _shard_path(self, key: FeatureKey, number: int) -> Path:
        return self.entry(key) / "shards" / f"{number:05d}.npy"

    @staticmethod
    def _load_shard(path: Path, n: int, dim: int) -> np.ndarray | None:
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return rows if rows.shape == (n, dim) and rows.dtype == np.float32 else None
