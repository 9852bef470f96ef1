"""Reading an index folder: ``index.json``, and where its checkpoint and images are now.

``index.json`` names the checkpoint that built the index and, for an image folder, the data
root, each *relative to the index folder* (``"../run/best.pt"``) with the absolute path at
indexing time as a fallback: a folder moved with its run and data, or moved alone, still
finds them. It also names the current generation's files (``index_file``, ``items_file``;
``index.npz`` and ``items.npz`` in folders that were never added to; ``outputs_file``, the
continuous outputs of a hashing model's items, absent in older folders):
:mod:`deephash.service.store` writes a new generation beside the old one and switches by
rewriting ``index.json``, one atomic rename. ``checksums`` maps each of the generation's
files (every ``*_file`` entry) to its SHA-256, taken when it was written;
:func:`verify_checksums` compares them before any byte of those files is parsed (numpy,
faiss). Folders written before checksums have none: their files are checked by structure
as they are read.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deephash.errors import ConfigError
from deephash.fileio import file_sha256
from deephash.folders import INFO as INFO  # moved there: below validation
from deephash.folders import read_info as read_info

log = logging.getLogger(__name__)


def relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``"../run/best.pt"``); absolute where none exists
    (another drive)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:
        return str(Path(path).resolve())


def data_files(info: dict[str, Any]) -> tuple[str, str]:
    """The current generation's index and items files, relative to the folder."""
    return info.get("index_file", "index.npz"), info.get("items_file", "items.npz")


def checksums(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{file name: SHA-256}`` of the named files of ``folder``, for ``index.json``."""
    return {name: file_sha256(Path(folder) / name) for name in names}


def verify_checksums(folder: Path, info: dict[str, Any]) -> None:
    """Refuse the generation ``info`` names when a file differs from the SHA-256 recorded
    when it was written (truncated, damaged, edited), or when a file of the generation has
    none recorded. Does nothing for folders written before checksums."""
    if "checksums" not in info:
        return
    recorded = info["checksums"]
    current = generation_files(info)
    if (not isinstance(recorded, dict) or not all(isinstance(name, str) for name in current)
            or not set(current) <= set(recorded)
            or any(Path(name).name != name for name in recorded)):
        raise ConfigError(f"{Path(folder) / INFO}: its checksums do not cover the files it "
                          "names; rebuild with deephash index")
    for name in current:
        digest, path = recorded[name], Path(folder) / name
        try:
            actual = file_sha256(path)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}; rebuild with deephash "
                              "index") from None
        if actual != digest:
            raise ConfigError(f"{path} is damaged or was changed since it was written (its "
                              f"SHA-256 is not the one {INFO} records); rebuild with deephash "
                              "index")


def outputs_file(info: dict[str, Any]) -> str | None:
    """The current generation's continuous-outputs file (``None``: the folder has none)."""
    found = info.get("outputs_file")
    return None if found is None else str(found)


def base_bytes(folder: Path, info: dict[str, Any]) -> int:
    """The size on disk of the current generation's base files (index, items, outputs;
    0 for those missing)."""
    extra = outputs_file(info)
    total = 0
    for name in (*data_files(info), *(() if extra is None else (extra,))):
        with contextlib.suppress(OSError):
            total += (folder / name).stat().st_size
    return total


def generation_files(info: dict[str, Any]) -> list[Any]:
    """Every data file of the current generation, relative to the folder: each ``*_file``
    entry of ``index.json`` as written (``index.npz`` and ``items.npz`` in folders that
    never named theirs)."""
    named = [value for key, value in info.items() if key.endswith("_file")]
    return named or list(data_files(info))


def locate(folder: Path, info: dict[str, Any], key: str) -> Path | None:
    """Where ``info[key]`` is now: relative to the index folder (an absolute entry of an
    older index stays as it is), else at its absolute place when indexed; ``None`` if
    neither exists."""
    for place in (folder / info[key], info.get(f"{key}_absolute")):
        if place is not None and Path(place).exists():
            return Path(place)
    return None


def checkpoint_path(folder: Path, info: dict[str, Any], override: str | None) -> Path:
    """The checkpoint that built the index (``override`` when given)."""
    if override:
        return Path(override)
    found = locate(folder, info, "checkpoint")
    if found is None:
        places = " or ".join(dict.fromkeys(os.path.normpath(p) for p in (
            folder / info["checkpoint"], info.get("checkpoint_absolute")) if p))
        raise ConfigError(f"{folder / INFO} names checkpoint {info['checkpoint']}, "
                          f"which is not at {places}; pass --checkpoint with the run's best.pt")
    return found


def describe_kind(codes: bool, dim: Any) -> str:
    return f"{dim}-bit codes" if codes else f"{dim}-d embeddings"


def check_fits(codes: bool, dim: int, info: dict[str, Any], checkpoint: Path) -> None:
    """Refuse a checkpoint whose vectors (``codes``, ``dim``) are not the index's kind and
    size."""
    if codes != info["codes"] or dim != info.get("dim", dim):
        raise ConfigError(f"checkpoint {checkpoint} gives {describe_kind(codes, dim)}, the "
                          f"index holds {describe_kind(info['codes'], info.get('dim'))}; pass "
                          "the checkpoint that built the index")


def item_root(folder: Path, info: dict[str, Any]) -> Path | None:
    """The folder item paths are relative to (``None``: they are complete, or a data set's
    own descriptions)."""
    if "data_root" not in info:
        return None
    found = locate(folder, info, "data_root")
    if found is None:
        log.warning("the indexed images are neither at %s nor at %s; printing their paths "
                    "as indexed", folder / info["data_root"], info.get("data_root_absolute"))
        found = folder / info["data_root"]
    return found.resolve()
