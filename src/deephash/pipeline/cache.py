"""Where the feature cache (and the data sets' fingerprint memo) lives."""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path
from typing import Protocol

from deephash.data.fingerprint import default_cache_root

log = logging.getLogger(__name__)


class CacheSettings(Protocol):
    """The two cache fields of :class:`~deephash.pipeline.config.ExtractionConfig` (and of
    ``deephash index``'s configuration)."""

    cache: bool
    cache_dir: str | None


def cache_location(cfg: CacheSettings) -> Path | None:
    """The feature cache root (``cache_dir``, else ``$DEEPHASH_CACHE`` or
    ``~/.cache/deephash``), or ``None`` when caching is off or the root cannot be written
    (a read-only folder or file system: the run goes on uncached, with one warning)."""
    if not cfg.cache:
        return None
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()
    return root if _writable(root.resolve()) else None


@functools.cache
def _writable(root: Path) -> bool:
    """Whether files can be created in ``root`` (created if missing); asked once per root
    and process, so that a read-only cache is warned about once."""
    try:
        _try_writing(root)
    except OSError as exc:
        log.warning("the feature cache %s cannot be written (%s); running without the cache",
                    root, exc.strerror or exc)
        return False
    return True


def _try_writing(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=root):
        pass
