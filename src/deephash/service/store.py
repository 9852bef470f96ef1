"""Adding images to an index folder, atomically: a crash leaves the old state loadable.

Generation ``g`` writes, each file under a temporary name, fsynced and renamed into place
(:func:`deephash.fileio.atomic_write`): the uploaded images (``added/<id>.<ext>``), the
whole index (``index-<g>.npz``), items (``items-<g>.npz``) and, where the folder keeps
them, the continuous outputs (``outputs-<g>.npz``). Nothing reads those yet;
the one switch is rewriting ``index.json`` to name them, again a rename. A crash before it
leaves ``index.json`` naming generation ``g - 1``, whose files are untouched; after it,
the new generation is complete on disk. Files older than the previous generation are then
removed (a reader that opened ``index.json`` just before the switch still finds its files).
Adds are serialised by a lock file, and refused when another process added first.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deephash.fileio import save_bytes, save_json
from deephash.index import load_index
from deephash.service.errors import ApiError
from deephash.service.folder import INFO, data_files, read_info
from deephash.service.outputs import save_outputs
from deephash.service.state import IndexState

ADDED = "added"


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively (other processes adding wait); no-op without
    ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux
        yield
        return
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def add_images(state: IndexState, vectors: np.ndarray, images: list[tuple[bytes, str]],
               label: int, classes: tuple[str, ...],
               outputs: np.ndarray | None = None) -> IndexState:
    """Persist ``images`` (encoded bytes, file extension) with their ``(n, W)`` ``vectors``
    (and ``(n, K)`` continuous ``outputs``, appended where the folder keeps them) as the
    folder's next generation, all labelled ``label`` (``-1``: none) under ``classes``;
    return that generation's state."""
    folder = state.folder
    kept = None  # the new generation's outputs, where the folder keeps them
    if state.outputs is not None:
        if outputs is None or len(outputs) != len(images):
            raise ValueError("the folder keeps continuous outputs: give one per added image")
        kept = np.concatenate([state.outputs, np.asarray(outputs, dtype=np.float16)])
    with folder_lock(folder):
        if int(read_info(folder).get("generation", 0)) != state.generation:
            raise ApiError(409, f"{folder} changed on disk since this server loaded it (another "
                                "process added images); restart the server to load it")
        ids = np.arange(state.size, state.size + len(images), dtype=np.int64)
        paths = [f"{ADDED}/{i}.{ext}" for i, (_data, ext) in zip(ids, images, strict=True)]
        for path, (data, _ext) in zip(paths, images, strict=True):
            save_bytes(folder / path, data)
        index = load_index(folder / data_files(state.info)[0])  # a copy; the live one stays
        index.add(vectors, ids=ids)
        items = state.items.extended(paths, label, classes)
        generation = state.generation + 1
        files = {"index_file": f"index-{generation}.npz", "items_file": f"items-{generation}.npz"}
        index.save(folder / files["index_file"])
        items.save(folder / files["items_file"])
        if kept is not None:
            files["outputs_file"] = f"outputs-{generation}.npz"
            save_outputs(folder / files["outputs_file"], kept)
        sync_folder(folder / ADDED)
        sync_folder(folder)
        info = {**state.info, **files, "generation": generation, "n_items": len(items)}
        save_json(folder / INFO, info)  # the switch
        sync_folder(folder)
        remove_stale(folder, generation)
    return IndexState(folder, info, items, index, np.concatenate([state.vectors, vectors]), kept)


def sync_folder(folder: Path) -> None:
    """Make the folder's entries (renames) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale(folder: Path, generation: int) -> None:
    """Delete index, items and outputs files older than the previous generation."""
    for path in folder.iterdir():
        match = re.fullmatch(r"(?:index|items|outputs)(?:-(\d+))?\.npz", path.name)
        if match and int(match.group(1) or 0) < generation - 1:
            path.unlink(missing_ok=True)
