"""What ``--overwrite`` may replace: the guard shared by run folders and index folders.

An ``--out`` that already holds something is replaced only when it holds what the command
itself writes (a run folder for a run, an index folder for ``deephash index``) and holds
none of the folders a mistake there would destroy: the working directory, the home folder,
the data and the feature cache (nor any folder above them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from deephash.data.fingerprint import default_cache_root
from deephash.data.open import resolve_data_dir
from deephash.errors import ConfigError, DeephashError


def protected_folders(data_dir: str | None, dataset: str,
                      cache_dir: str | None) -> list[tuple[str, Path]]:
    """``(what, folder)`` pairs, resolved, that ``--overwrite`` must never replace: the
    working directory, the home folder, the data (``data_dir``, else where ``dataset`` is
    found) and the feature cache (``cache_dir``, else the default cache)."""
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
