"""Append segments of an index folder: each add writes only its own items, in O(batch).

Generation ``g`` of a folder (its base files, named by ``index.json``) is followed by its
segments ``append-<g>-1.npz``, ``append-<g>-2.npz``, ...: one per add, holding that add's
rows only: ``start`` (the first item id), ``vectors`` (``(n, W)`` packed codes or ``(n, D)``
embeddings), ``outputs`` (``(n, K)`` float16, in folders that keep continuous outputs), the
items' arrays (:meth:`deephash.service.items.Items.arrays`: ``paths``, ``labels``,
``local`` and ``classes``, every class of the folder after the add) and ``digest``, the
SHA-256 of all the others. A segment is written to a temporary name, fsynced and renamed
(:func:`deephash.fileio.save_npz`): the rename is the add's commit point. A crash before
it leaves a temporary file that no reader lists (the add is lost, nothing earlier); after
it the segment is whole. A folder loads as its base followed by its segments in order
(:func:`deephash.service.state.load_state`); compaction folds them into the next
generation (:mod:`deephash.service.store`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deephash.errors import ConfigError, DataError
from deephash.fileio import load_npz, save_npz
from deephash.service.items import Items

SEGMENT = re.compile(r"append-(\d+)-(\d+)\.npz")


def segment_name(generation: int, seq: int) -> str:
    """``append-3-7.npz``: the ``seq``-th segment (from 1) after generation ``generation``."""
    return f"append-{generation}-{seq}.npz"


@dataclass(frozen=True)
class Segment:
    """One add's rows: item ids ``start .. start + n - 1``."""

    start: int
    items: Items  # its n rows, over every class of the folder after the add
    vectors: np.ndarray  # (n, W) codes or (n, D) embeddings
    outputs: np.ndarray | None  # (n, K) float16, or None

    def __len__(self) -> int:
        return len(self.items)


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of ``arrays`` (names, dtypes, shapes and bytes, in name order)."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def save_segment(path: Path, segment: Segment) -> None:
    """Write ``segment`` at ``path`` atomically (temporary name, fsync, rename)."""
    arrays = {**segment.items.arrays(), "start": np.array(segment.start, dtype=np.int64),
              "vectors": np.asarray(segment.vectors)}
    if segment.outputs is not None:
        arrays["outputs"] = np.asarray(segment.outputs, dtype=np.float16)
    save_npz(path, **arrays, digest=np.array(digest(arrays)))


def load_segment(path: Path) -> Segment:
    """The segment at ``path``; a one-line ``ConfigError`` when it is damaged."""
    try:
        arrays = load_npz(path)
        recorded = str(arrays.pop("digest", ""))
        if recorded != digest(arrays):
            raise ValueError("its digest does not match its contents (damaged or edited)")
        items = Items.from_arrays(arrays)
        vectors, outputs = arrays["vectors"], arrays.get("outputs")
        if len(vectors) != len(items) or (outputs is not None and len(outputs) != len(items)):
            raise ValueError(f"it holds {len(vectors)} vectors for {len(items)} items")
        return Segment(int(arrays["start"]), items, vectors, outputs)
    except (OSError, ValueError, KeyError, DataError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read {path}: {reason}; delete it (losing that add) or "
                          "rebuild with deephash index") from None


def segment_files(folder: Path, generation: int) -> list[Path]:
    """Generation ``generation``'s segments in ``folder``, in order; a gap in their numbers
    is a one-line ``ConfigError``."""
    found: dict[int, Path] = {}
    for path in Path(folder).glob(f"append-{generation}-*.npz"):
        match = SEGMENT.fullmatch(path.name)
        if match and int(match.group(1)) == generation:
            found[int(match.group(2))] = path
    if sorted(found) != list(range(1, len(found) + 1)):
        raise ConfigError(f"{folder}: the append segments of generation {generation} are "
                          f"numbered {sorted(found)}, not 1..{len(found)}; restore the missing "
                          "ones or rebuild with deephash index")
    return [found[seq] for seq in sorted(found)]
