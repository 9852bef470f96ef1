"""Progress bars for long work, switched off for pipes, tests and ``DEEPHASH_PROGRESS=0``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars show on a terminal unless ``DEEPHASH_PROGRESS=0``; ``=1`` forces them on.
    Under torchrun, only rank 0 shows them."""
    if os.environ.get("RANK", "0") not in ("0", ""):
        return False
    setting = os.environ.get("DEEPHASH_PROGRESS")
    if setting is not None:
        return setting not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0) -> tqdm:
    """A manual bar (``bar.update(n)``); a silent no-op when bars are disabled."""
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True,
                disable=not progress_enabled(), leave=False)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "",
             unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a bar when bars are enabled."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                disable=not progress_enabled(), leave=False)
