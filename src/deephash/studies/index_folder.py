"""Where ``deephash index`` writes: the ``--out`` rule of index folders, and the atomic write.

The rule of run folders applied to index folders (:mod:`deephash.folders`): a non-empty
``--out`` is refused unless ``--overwrite``, which replaces only an index folder (one with
an ``index.json``) that holds neither a run, the working directory, the home folder, the
data nor the feature cache. All of it is checked by
:func:`~deephash.folders.check_index_out`, called by :func:`deephash.validation.validate`,
before anything is extracted or written.

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

from deephash.folders import check_kept_images
from deephash.service.folder import read_info
from deephash.service.store import folder_lock, sync_folder, write_generation


def write_index(out: Path, info: dict[str, Any],
                parts: Mapping[str, Callable[[Path], None]]) -> dict[str, Any]:
    """Write an index folder (``parts`` and ``info``, as
    :func:`~deephash.service.store.write_generation` takes them) at ``out``, atomically
    (module docstring); return its ``index.json``. ``out`` was checked by
    :func:`~deephash.folders.check_index_out`."""
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
