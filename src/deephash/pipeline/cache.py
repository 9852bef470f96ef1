"""Where the feature cache (and the data sets' fingerprint memo) lives."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from deephash.data.fingerprint import default_cache_root


class CacheSettings(Protocol):
    """The two cache fields of :class:`~deephash.pipeline.config.ExtractionConfig` (and of
    ``deephash index``'s configuration)."""

    cache: bool
    cache_dir: str | None


def cache_location(cfg: CacheSettings) -> Path | None:
    """The feature cache root (``cache_dir``, else ``$DEEPHASH_CACHE`` or
    ``~/.cache/deephash``), or ``None`` when caching is off."""
    if not cfg.cache:
        return None
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()
