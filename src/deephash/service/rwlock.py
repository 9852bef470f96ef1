"""A readers-writer lock: many searches at once, or one writer changing the live index.

Searches hold it shared (:meth:`RWLock.reading`) while they read the state's index; an add
holds it exclusively (:meth:`RWLock.writing`) only while it grows the live index in memory
and swaps in the new state: its disk writes and compaction happen outside it, so searches
keep answering. A waiting writer goes before newly arriving readers (no writer starves
under a steady stream of searches).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RWLock:
    """Shared for readers, exclusive for a writer; writers preferred once waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
