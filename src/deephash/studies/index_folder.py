"""Where ``deephash index`` writes: the ``--out`` rule of index folders, and the atomic write.

The rule of run folders (:mod:`deephash.studies.out_folder`) applied to index folders: a
non-empty ``--out`` is refused unless ``--overwrite``, which replaces only an index folder
(one with an ``index.json``) that holds neither a run, the working directory, the home
folder, the data nor the feature cache. All of it is checked by :func:`check_out`, called
by :func:`deephash.validation.validate`, before anything is extracted or written.

Images added to an index (``POST /items`` keeps them in ``added/``) are never dropped:
replacing an index folder that holds any is refused, with the way to keep them. They are
not carried over into the new index because nothing in the new one can take them as they
are: they were embedded by the old checkpoint, the new index may come from another model
(their vectors must be computed again), from another data set (their class names may not
exist there) and its item paths are relative to its own data root. Copying them into the
data set, under their class, and indexing again gives an index where they are ordinary
items; that is the user's call, and the error says so.

The new index is written atomically. Into a new or empty ``--out`` it is written in a
hidden folder beside it and renamed into place: it appears complete or not at all. An
index already there is replaced in place as the folder's next generation
(:func:`deephash.service.store.write_generation`, under the folder's lock): a crash before
the switch of ``index.json`` leaves the old index loadable, and a server that still has the
old one open refuses to add to the new one (its generation changed) instead of mixing them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deephash.errors import ConfigError
from deephash.service.folder import read_info
from deephash.service.store import ADDED, folder_lock, sync_folder, write_generation
from deephash.studies.configs import IndexConfig
from deephash.studies.out_folder import check_clearable, protected_folders
from deephash.studies.run_folder import is_run_folder


def is_index_folder(path: Path) -> bool:
    """Whether ``path`` holds a readable ``index.json`` of deephash."""
    try:
        read_info(path)
    except ConfigError:
        return False
    return True


def check_kept_images(out: Path) -> None:
    """Refuse to replace an index that holds images added to it (``added/``)."""
    added = out / ADDED
    count = sum(1 for p in added.iterdir() if p.is_file() and not p.name.startswith(".")
                ) if added.is_dir() else 0
    if count:
        raise ConfigError(f"--overwrite: {out} holds {count} images added to the index (in "
                          f"{added}); replacing it would drop them. To keep them, copy them "
                          "into the data set under their class and index into another --out "
                          f"(or move {added} away yourself to drop them)")


def check_out(config: IndexConfig) -> None:
    """Refuse an ``--out`` that ``deephash index`` must not write (module docstring)."""
    out = Path(config.out).expanduser()
    if not out.is_dir() or not any(out.iterdir()):
        return  # new or empty (a file there is refused by validate)
    if is_run_folder(out):
        raise ConfigError(f"--out {out} holds a deephash run; an index goes into a folder of "
                          "its own: choose another --out")
    if not config.overwrite:
        what = "an index" if is_index_folder(out) else "other files"
        raise ConfigError(f"--out {out} already holds {what}; replace it with --overwrite, or "
                          "choose another --out")
    protected = protected_folders(config.data_dir, config.dataset, config.cache_dir)
    if config.image_root is not None:
        protected.append(("the images (--image-root)",
                          Path(config.image_root).expanduser().resolve()))
    check_clearable(out, "index folder", "index.json", is_index_folder, protected)
    check_kept_images(out)


def write_index(out: Path, info: dict[str, Any],
                parts: Mapping[str, Callable[[Path], None]]) -> dict[str, Any]:
    """Write an index folder (``parts`` and ``info``, as
    :func:`~deephash.service.store.write_generation` takes them) at ``out``, atomically
    (module docstring); return its ``index.json``. ``out`` was checked by :func:`check_out`."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):  # an index folder, replaced with --overwrite
        with folder_lock(out):
            check_kept_images(out)  # a server may have added images since the check
            generation = int(read_info(out).get("generation", 0)) + 1
            return write_generation(out, generation, info, parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        written = write_generation(tmp, 0, info, parts)
        os.replace(tmp, out)  # onto a missing or an empty folder
        sync_folder(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
