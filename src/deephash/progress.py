"""Progress of long work: a bar on a terminal, a log line every few seconds elsewhere.

On a terminal (stderr a TTY) progress is a tqdm bar. Anywhere else (a log file, CI,
``nohup``) a bar would print nothing readable, so progress is a log line of the
``deephash.progress`` logger every ``DEEPHASH_PROGRESS_EVERY`` seconds (default 10), e.g.
``features resnet50 224px identity: 12,000/60,000 img (20 %), 410 img/s, about 2 min
left``; work that ends before the first interval logs nothing, work that logged a line logs
one more when it ends. ``DEEPHASH_PROGRESS=0`` silences progress, ``=1`` forces a bar,
``=log`` forces log lines; under torchrun only rank 0 reports, and ``deephash -q`` (the
``deephash.progress`` logger set above INFO) silences bars and lines alike.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Protocol, TypeVar

from tqdm.auto import tqdm

from deephash.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: seconds between two progress lines when stderr is not a terminal
DEFAULT_EVERY = 10.0


class ProgressBar(Protocol):
    """What the callers use of a bar: ``update(n)`` as work is done, ``close()`` at the end."""

    def update(self, n: float = 1) -> bool | None: ...

    def close(self) -> None: ...


def progress_mode() -> str:
    """``"bar"``, ``"log"`` or ``"off"``: a bar on a terminal, log lines elsewhere; off for
    ``DEEPHASH_PROGRESS=0``, a torchrun rank other than 0, or the ``deephash.progress``
    logger set above INFO (``deephash -q``). ``DEEPHASH_PROGRESS=1`` forces a bar,
    ``=log`` log lines."""
    if os.environ.get("RANK", "0") not in ("0", "") or log.level > logging.INFO:
        return "off"
    setting = os.environ.get("DEEPHASH_PROGRESS")
    if setting == "log":
        return "log"
    if setting is not None:
        return "off" if setting in ("0", "false", "no", "") else "bar"
    return "bar" if sys.stderr.isatty() else "log"


def progress_enabled() -> bool:
    """Whether long work reports its progress at all (:func:`progress_mode` is not off)."""
    return progress_mode() != "off"


def progress_every() -> float:
    """Seconds between progress lines: ``DEEPHASH_PROGRESS_EVERY`` (a positive number), else
    :data:`DEFAULT_EVERY`."""
    text = os.environ.get("DEEPHASH_PROGRESS_EVERY")
    if text is None or not text.strip():
        return DEFAULT_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"DEEPHASH_PROGRESS_EVERY must be a number of seconds above 0, got "
                          f"{text!r}")
    return seconds


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``: a time left or taken, to the unit that matters."""
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def _rate(per_second: float) -> str:
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2g}"


class LogProgress:
    """Progress as log lines: ``update(n)`` counts, and at most every ``every`` seconds
    (``time.monotonic``) one line says done/total, the rate since the start and the time
    left at that rate. Thread-safe (extraction reports from its loader threads)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 every: float = DEFAULT_EVERY) -> None:
        self.total, self.desc, self.every = total, desc, every
        self.unit = "" if unit == "it" else f" {unit}"
        self.done = self.initial = initial
        self.start = self.last = time.monotonic()
        self.reported = False
        self._lock = threading.Lock()

    def update(self, n: float = 1) -> None:
        with self._lock:
            self.done += int(n)
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.reported = True
                log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """``desc: 12,000/60,000 img (20 %), 410 img/s, about 2 min left``."""
        elapsed = now - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        if self.total:
            counted = (f"{self.done:,}/{self.total:,}{self.unit} "
                       f"({100 * self.done // self.total} %)")
        else:
            counted = f"{self.done:,}{self.unit}"
        text = f"{self.desc}: {counted}, {_rate(rate)}{self.unit}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {duration((self.total - self.done) / rate)} left"
        return text

    def close(self) -> None:
        """A last line when the work lasted long enough to log one before (short work stays
        silent)."""
        with self._lock:
            if self.reported:
                now = time.monotonic()
                elapsed = now - self.start
                rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
                total = f"/{self.total:,}" if self.total else ""
                log.info("%s: %s%s%s done in %s (%s%s/s)", self.desc, f"{self.done:,}", total,
                         self.unit, duration(elapsed), _rate(rate), self.unit)
                self.reported = False


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0) -> ProgressBar:
    """A manual bar (``bar.update(n)``, ``bar.close()``): tqdm on a terminal, log lines
    elsewhere (:class:`LogProgress`), a silent no-op when progress is off."""
    mode = progress_mode()
    if mode == "log":
        return LogProgress(total, desc, unit, initial, every=progress_every())
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True,
                disable=mode == "off", leave=False)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "",
             unit: str = "it") -> Iterable[T]:
    """``iterable`` with its progress reported as :func:`progress_bar` reports it."""
    mode = progress_mode()
    if mode != "log":
        return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                    disable=mode == "off", leave=False)
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return _logged(iterable, LogProgress(total, desc, unit, every=progress_every()))


def _logged(iterable: Iterable[T], bar: LogProgress) -> Iterator[T]:
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
