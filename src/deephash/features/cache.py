"""On-disk feature cache, keyed by everything that changes the features.

An entry is a folder ``<root>/features/<digest>/`` holding ``key.json`` (the full key)
and ``features.npy`` (``(N, D)`` float32, one row per pool index). ``features.npy`` is
written atomically and last, so an interrupted run never leaves an entry that reads as
valid. While an entry is being computed, finished shards of ``shard_size`` images
(``rows-000000-004096.npy``, ...: :mod:`deephash.features.shards`) sit in ``shards/``,
each written atomically; a rerun resumes from them (computing only the missing ones) and
deletes them once ``features.npy`` exists. Several views of the same images
(:meth:`FeatureCache.get_or_compute_views`) are computed together, shard by shard, each
into its own entry. Under torchrun each rank computes a contiguous block of the shards,
rank 0 reports the whole pool's progress as the others' shards appear, and once all are
written (a barrier) joins them in row order, streaming one shard at a time; so
``--cache-dir`` must be a folder every rank sees (a shared file system across machines).
A rerun after a killed rank or machine reuses every finished shard, whichever rank wrote
it. Entries are read memory-mapped and read-only: a 60,000 x 1280 pool costs no copy until
rows are used.

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
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from deephash.distributed import barrier, ranks
from deephash.features.shards import ShardPlan, await_others, shard_size_setting
from deephash.fileio import atomic_write, save_json, save_npy

log = logging.getLogger(__name__)

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

    def __init__(self, root: Path, shard_size: int | None = None) -> None:
        self.root = Path(root)
        self.shard_size = shard_size_setting() if shard_size is None else shard_size

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
        or whole entries) instead of computed by this process (on rank 0: by another rank
        too). Across ranks, each computes its block of the shards; every rank must call.
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
        group, plan = ranks(), ShardPlan(first.n_images, self.shard_size)
        mine = plan.numbers(group)

        def finished(number: int) -> bool:
            return all(self._shard_path(key, plan.ranges[number]).is_file()
                       for key in missing.values())

        def report(rows: range) -> None:
            if on_resume is not None:
                on_resume(len(rows) * len(missing))

        earlier: set[int] = set()
        if group.main:
            earlier = {number for number in range(len(plan.ranges)) if finished(number)}
            if earlier:
                log.info("feature cache: %d of %d shards finished by an earlier run are "
                         "reused; computing the other %d", len(earlier), len(plan.ranges),
                         len(plan.ranges) - len(earlier))
            for number in earlier - set(mine):
                report(plan.ranges[number])
        barrier()  # rank 0 has seen what an earlier run left before anyone adds to it
        for number in mine:
            self._compute_shard(missing, plan.ranges[number], first.dim, compute, on_resume)
        if group.main and group.world > 1:  # the whole pool's progress, as shards appear
            await_others(plan, set(mine) | earlier, finished, report)
        barrier()  # every rank's shards are written
        if group.main:
            for key in missing.values():
                self._assemble(key, plan)
        barrier()  # rank 0 has joined them
        for view, key in missing.items():
            loaded = self.load(key)
            if loaded is None:
                raise OSError(f"feature cache entry {self.entry(key)} cannot be read back "
                              "after writing it; check the disk")
            out[view] = loaded
        return {view: out[view] for view in keys}

    def _compute_shard(self, missing: Mapping[str, FeatureKey], rows: range, dim: int,
                       compute: ComputeViews,
                       on_resume: Callable[[int], object] | None) -> None:
        """The shard of ``rows`` of every view in ``missing``: the views whose shard file
        is absent or damaged are computed together and written atomically."""
        paths = {view: self._shard_path(key, rows) for view, key in missing.items()}
        found = {view: self._load_shard(path, len(rows), dim) is not None
                 for view, path in paths.items()}
        todo = tuple(view for view, ok in found.items() if not ok)
        if on_resume is not None and len(todo) < len(found):
            on_resume(len(rows) * (len(found) - len(todo)))
        if not todo:
            return
        computed = compute(np.arange(rows.start, rows.stop), todo)
        for view in todo:
            values = np.ascontiguousarray(computed[view], dtype=np.float32)
            if values.shape != (len(rows), dim):
                raise ValueError(f"computed {values.shape} features for {len(rows)} images "
                                 f"of dimension {dim}")
            save_npy(paths[view], values)

    def _assemble(self, key: FeatureKey, plan: ShardPlan) -> None:
        """Join the entry's shards, in row order, into ``features.npy`` (streamed, so
        memory holds one shard at a time; written atomically), then delete them."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": (key.n_images, key.dim)}
        shards = [self._shard_path(key, rows) for rows in plan.ranges]

        def write(handle: IO[bytes]) -> None:
            np.lib.format.write_array_header_1_0(handle, header)
            for path, rows in zip(shards, plan.ranges, strict=True):
                values = self._load_shard(path, len(rows), key.dim)
                if values is None:
                    raise OSError(f"feature cache {self.entry(key)}: shard {path.name} of "
                                  "another process is missing or damaged; give every rank "
                                  "the same --cache-dir and run again (finished shards are "
                                  "kept)")
                handle.write(values.tobytes())

        atomic_write(self.entry(key) / "features.npy", write)
        shutil.rmtree(self.entry(key) / "shards", ignore_errors=True)

    def _shard_path(self, key: FeatureKey, rows: range) -> Path:
        return self.entry(key) / "shards" / ShardPlan.name(rows)

    @staticmethod
    def _load_shard(path: Path, n: int, dim: int) -> np.ndarray | None:
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return rows if rows.shape == (n, dim) and rows.dtype == np.float32 else None
