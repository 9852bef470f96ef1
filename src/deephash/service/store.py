"""Writing an index folder: appends in O(batch), generations atomically; a crash loses at
most the write under way, never what was committed before.

An add (:func:`append_images`) saves the uploaded images (``added/<id>.<ext>``), then
writes only its own rows as the next append segment ``append-<g>-<seq>.npz``
(:mod:`deephash.service.segments`): temporary name, fsync, rename (the commit point), fsync
of the folder. A crash before the rename leaves a temporary file no reader lists; a failed
fsync after it removes the segment again, so the server and the disk agree.

A generation ``g`` (:func:`write_generation`: a fresh ``deephash index``, ``--overwrite``,
or :func:`compact` folding a state's base and segments together) writes, each file under a
temporary name, fsynced and renamed into place: the whole index (``index-<g>.npz``), items
(``items-<g>.npz``) and, where the folder keeps them, the continuous outputs
(``outputs-<g>.npz``), their SHA-256 going into ``index.json`` (generation 0 names them
``index.npz`` and ``items.npz``). Nothing reads those yet; the one switch is rewriting
``index.json`` to name them, again a rename. A crash before it leaves ``index.json`` naming
generation ``g - 1``, whose base and segments are untouched; after it, the new generation is
complete on disk. Files and segments older than the previous generation are then removed (a
reader that opened ``index.json`` just before the switch still finds its files). Writes are
serialised by a lock file, and refused when another process appended or compacted first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from deephash.fileio import save_json, write_unnamed
from deephash.folders import ADDED as ADDED  # moved there: below validation
from deephash.folders import added_path
from deephash.labels import LabelSet
from deephash.service.errors import ApiError
from deephash.service.folder import INFO, base_bytes, checksums, read_info, verify_checksums
from deephash.service.items import Items
from deephash.service.outputs import save_outputs
from deephash.service.segments import Segment, save_segment, segment_files, segment_name
from deephash.service.state import IndexState, grown

#: compact after this many appended items or bytes (``serve --compact-items/--compact-bytes``)
COMPACTION = (10_000, 256 * 2**20)

#: compact no sooner than the segments hold this fraction of the state's items (and of its
#: base files' bytes): a compaction rewrites the whole folder, O(N), so doing it once per
#: 0.1 N added items keeps an add amortised O(batch) (each item is rewritten at most ~11
#: times over its life), where a fixed 10,000 items would rewrite a 10-million-item folder
#: every 10,000 items
COMPACT_FRACTION = 0.1

#: the image files of one add written and fsync'd at once (:func:`write_images`)
IMAGE_WRITERS = 16


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


def append_images(state: IndexState, vectors: np.ndarray, images: list[tuple[bytes, str]],
                  labels: Sequence[int] | LabelSet, classes: tuple[str, ...],
                  outputs: np.ndarray | None = None) -> tuple[Segment, int]:
    """Persist ``images`` (encoded bytes, file extension) with their ``(n, W)`` ``vectors``
    (and ``(n, K)`` continuous ``outputs``, where the folder keeps them) as the folder's next
    append segment, each labelled with the class ids ``labels`` (empty: none) under
    ``classes``, or each with its own row of ``labels`` (a ``LabelSet`` over ``classes``);
    return the segment and its size in bytes. Writes O(n) bytes, whatever the folder holds;
    ``state`` is not changed (:func:`deephash.service.state.grown` is)."""
    if state.outputs is not None and (outputs is None or len(outputs) != len(images)):
        raise ValueError("the folder keeps continuous outputs: give one per added image")
    folder = state.folder
    with folder_lock(folder):
        check_current(state)
        ids = range(state.size, state.size + len(images))
        paths = [added_path(i, ext) for i, (_data, ext) in zip(ids, images, strict=True)]
        write_images(folder, paths, [data for data, _ext in images])
        sync_folder(folder / ADDED)
        none = Items(np.array([], dtype=str), LabelSet.from_ids(np.zeros(0, np.int64),
                                                                len(classes)), classes,
                     np.zeros(0, dtype=bool))
        rows = (Items(np.array(paths, dtype=str), labels, classes, np.ones(len(paths), bool))
                if isinstance(labels, LabelSet) else none.extended(paths, labels, classes))
        segment = Segment(state.size, rows,
                          np.asarray(vectors),
                          None if state.outputs is None else np.asarray(outputs, np.float16))
        written = folder / segment_name(state.generation, state.segments + 1)
        save_segment(written, segment)  # the commit point: the rename
        try:
            sync_folder(folder)
        except OSError:  # not known durable: undo it, so this process and the disk agree
            written.unlink(missing_ok=True)
            raise
    return segment, written.stat().st_size


def write_images(folder: Path, paths: Sequence[str], images: Sequence[bytes]) -> None:
    """Write and fsync each image at its path in ``folder`` (named by the segment only,
    written after them), :data:`IMAGE_WRITERS` at a time: concurrent fsyncs can share the
    file system's journal commits, where one after another each waits for its own. No
    write is under way when this returns; after a failure (raised) the writes not yet
    begun are dropped."""
    with ThreadPoolExecutor(max(1, min(IMAGE_WRITERS, len(paths)))) as pool:
        for _ in pool.map(lambda path, data: write_unnamed(folder / path, data), paths, images):
            pass


def add_images(state: IndexState, vectors: np.ndarray, images: list[tuple[bytes, str]],
               labels: Sequence[int], classes: tuple[str, ...],
               outputs: np.ndarray | None = None) -> IndexState:
    """:func:`append_images`, then the state with the images (its index grown in place)."""
    segment, nbytes = append_images(state, vectors, images, labels, classes, outputs)
    return grown(state, segment, nbytes)


def check_current(state: IndexState) -> None:
    """Refuse (409) to write after ``state`` when another process added or compacted."""
    folder = state.folder
    if (int(read_info(folder).get("generation", 0)) != state.generation
            or len(segment_files(folder, state.generation)) != state.segments):
        raise ApiError(409, f"{folder} changed on disk since this server loaded it (another "
                            "process added images); restart the server to load it")


def due(state: IndexState, max_items: int, max_bytes: int) -> bool:
    """Whether ``state``'s append segments hold ``max(max_items, COMPACT_FRACTION * N)``
    items (``N``: the state's) or ``max(max_bytes, COMPACT_FRACTION * base bytes)`` bytes
    (:data:`COMPACT_FRACTION`)."""
    if state.segments == 0:
        return False
    if state.segment_items >= max(max_items, COMPACT_FRACTION * state.size):
        return True
    return (state.segment_bytes >= max_bytes
            and state.segment_bytes >= COMPACT_FRACTION * base_bytes(state.folder, state.info))



def compact(state: IndexState) -> IndexState:
    """Fold ``state`` (its base and append segments) into the folder's next generation,
    atomically (:func:`write_generation`: a crash before the switch leaves the base and
    segments loadable); its segments are removed with the generation after. The index is
    only read: searches of ``state`` may run meanwhile."""
    folder = state.folder
    parts: dict[str, Callable[[Path], None]] = {"index": state.index.save,
                                                "items": state.items.save}
    kept = state.outputs
    if kept is not None:
        parts["outputs"] = lambda path: save_outputs(path, kept)
    with folder_lock(folder):
        check_current(state)
        verify_checksums(folder, state.info)  # what the base was read from is still whole
        info = write_generation(folder, state.generation + 1,
                                {**state.info, "n_items": state.size}, parts)
    return dataclasses.replace(state, info=info, segments=0, segment_items=0, segment_bytes=0)


def generation_file(part: str, generation: int) -> str:
    """``index.npz`` (generation 0), ``index-3.npz``: where ``part`` of a generation goes."""
    return f"{part}.npz" if generation == 0 else f"{part}-{generation}.npz"


def write_generation(folder: Path, generation: int, info: dict[str, Any],
                     parts: Mapping[str, Callable[[Path], None]]) -> dict[str, Any]:
    """Write generation ``generation`` of the index folder and switch to it; return its
    ``index.json`` (``info`` with the generation's files, their checksums and the number).

    Each part (``{"index": index.save, "items": items.save}``; a further per-generation
    file is one more entry) is saved by its function to :func:`generation_file`, named in
    ``<part>_file`` and its SHA-256 recorded in ``checksums``; then ``index.json`` is
    rewritten (the switch) and files older than the previous generation are removed."""
    files = {part: generation_file(part, generation) for part in parts}
    for part, save in parts.items():
        save(folder / files[part])
    sync_folder(folder)
    info = {**info, **{f"{part}_file": name for part, name in files.items()},
            "checksums": checksums(folder, files.values()), "generation": generation}
    save_json(folder / INFO, info)  # the switch
    sync_folder(folder)
    remove_stale(folder, generation, tuple(parts))
    return info


def sync_folder(folder: Path) -> None:
    """Make the folder's entries (renames) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale(folder: Path, generation: int, parts: tuple[str, ...] = ("index", "items")
                 ) -> None:
    """Delete the files of ``parts`` and the append segments older than the previous
    generation."""
    names = "|".join(map(re.escape, parts))
    for path in folder.iterdir():
        match = (re.fullmatch(rf"(?:{names})(?:-(\d+))?\.npz", path.name)
                 or re.fullmatch(r"append-(\d+)-\d+\.npz", path.name))
        if match and int(match.group(1) or 0) < generation - 1:
            path.unlink(missing_ok=True)
