"""What a folder holds (a run, an index) and what ``--overwrite`` may replace there: the
guard shared by run folders and index folders. Torch-free and below
:mod:`deephash.validation`, which checks every ``--out`` with it before any work, and below
the studies and the service, which write those folders.

An ``--out`` that already holds something is replaced only when it holds what the command
itself writes (a run folder for a run, an index folder for ``deephash index``) and holds
none of the folders a mistake there would destroy: the working directory, the home folder,
the data and the feature cache (nor any folder above them).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deephash.errors import ConfigError, DeephashError

if TYPE_CHECKING:
    from deephash.command_configs import IndexConfig

#: an index folder's description (:mod:`deephash.service.folder`)
INFO = "index.json"
#: the subfolder of an index folder that keeps the images added to it (``POST /items``)
ADDED = "added"


def added_path(item: int, ext: str) -> str:
    """The path, in an index folder, of the image added as item ``item`` (``ext``: its
    file extension, as uploaded)."""
    return f"{ADDED}/{item}.{ext}"


def protected_folders(data_dir: str | None, dataset: str,
                      cache_dir: str | None) -> list[tuple[str, Path]]:
    """``(what, folder)`` pairs, resolved, that ``--overwrite`` must never replace: the
    working directory, the home folder, the data (``data_dir``, else where ``dataset`` is
    found) and the feature cache (``cache_dir``, else the default cache)."""
    from deephash.data.fingerprint import default_cache_root  # numpy, torch: only when asked
    from deephash.data.open import resolve_data_dir

    found = [("the working directory", Path.cwd()), ("your home folder", Path.home())]
    with contextlib.suppress(DeephashError):  # no data location: nothing to protect
        found.append(("the data", resolve_data_dir(data_dir, dataset)))
    found.append(("the feature cache",
                  Path(cache_dir).expanduser() if cache_dir else default_cache_root()))
    return [(what, folder.resolve()) for what, folder in found]


def check_clearable(path: Path, kind: str, marks: str, is_kind: Callable[[Path], bool],
                    protected: list[tuple[str, Path]]) -> None:
    """Refuse to replace ``path`` unless ``is_kind(path)`` (a deephash ``kind``, recognised
    by ``marks``) and it holds none of the ``protected`` folders. Raises ``ConfigError``."""
    if not is_kind(path):
        raise ConfigError(f"--overwrite: {path} is not a deephash {kind} (no {marks}); clear it "
                          "yourself or choose another --out")
    real = path.resolve()
    for what, folder in protected:
        if real == folder or real in folder.parents:
            raise ConfigError(f"--overwrite: {path} holds {what} ({folder}); refusing to clear "
                              "it, choose another --out")


def read_parsed(path: Path, parse: Any) -> Any:
    """Parsed file contents, or ``None`` when missing or unreadable."""
    try:
        return parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a deephash ``run.json`` or ``config.yaml``."""
    info = read_parsed(path / "run.json", json.loads)
    config = read_parsed(path / "config.yaml", yaml.safe_load)
    return (isinstance(info, dict) and "deephash" in info) or (
        isinstance(config, dict) and "out" in config)


def read_info(folder: Path) -> dict[str, Any]:
    """``folder/index.json``; a ``ConfigError`` naming the fix when it is not an index folder."""
    try:
        info = json.loads((Path(folder) / INFO).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{folder} is not an index folder (run deephash index)") from None
    if not isinstance(info, dict) or "codes" not in info or "checkpoint" not in info:
        raise ConfigError(f"{Path(folder) / INFO} is not an index description (run deephash "
                          "index again)")
    return info


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


def check_index_out(config: IndexConfig) -> None:
    """Refuse an ``--out`` that ``deephash index`` must not write
    (:mod:`deephash.studies.index_folder`)."""
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
