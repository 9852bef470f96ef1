"""Bounded memory for decoded uploads: one image at a time per request, a pixel budget
across requests, and memory handed back to the system after a large request.

A request's images are decoded one after the other, each straight into the model's input
pixels (:meth:`~deephash.service.embedder.Embedder.prepare`: ``(V, 3, S, S)`` uint8, about
150 KB a view at 224) before the next is decoded, so a request holds at most one decoded
image. Every decode first takes its pixels from a :class:`PixelBudget` shared by all
requests (``--max-pixels-in-flight``) and gives them back after; a request that finds the
budget spent waits for it (503 after :data:`WAIT_S`). glibc keeps freed memory for reuse
(large blocks come from the heap once its mmap threshold has grown), so a process that
decoded 6000 x 6000 images stays gigabytes large; after a request that decoded more than
:data:`TRIM_ABOVE` pixels, :func:`release_memory` returns free memory to the system.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from deephash.service.downscale import decoded_pixels
from deephash.service.embedder import Embedder
from deephash.service.errors import ApiError
from deephash.service.uploads import Upload, decode_inspected

#: seconds a decode waits for the pixel budget before the request is answered 503
WAIT_S = 60.0
#: pixels decoded by one request above which its memory is handed back (about 12 MB RGB)
TRIM_ABOVE = 4_000_000


class PixelBudget:
    """At most ``total`` pixels held at once by :meth:`hold` across threads; ``peak`` is the
    most ever held (for tests and the benchmark)."""

    def __init__(self, total: int, wait_s: float = WAIT_S) -> None:
        self.total, self.wait_s = total, wait_s
        self.held = self.peak = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` (at most ``total``) for the block, waiting until they are free."""
        pixels = min(pixels, self.total)
        with self._changed:
            if not self._changed.wait_for(lambda: self.held + pixels <= self.total,
                                          timeout=self.wait_s):
                raise ApiError(503, "the server is busy decoding other large images "
                                    "(--max-pixels-in-flight); retry in a moment")
            self.held += pixels
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._changed:
                self.held -= pixels
                self._changed.notify_all()


def prepare_uploads(uploads: list[Upload], embedder: Embedder,
                    budget: PixelBudget) -> list[torch.Tensor]:
    """Each upload's model input pixels (:meth:`Embedder.prepare`), decoded one at a time
    within ``budget``."""
    prepared = []
    for upload in uploads:
        size = embedder.image_size
        with budget.hold(decoded_pixels(upload.width, upload.height, upload.kind, size)):
            prepared.append(embedder.prepare(decode_inspected(upload, size)))
    return prepared


@contextlib.contextmanager
def handing_back(uploads: list[Upload]) -> Iterator[None]:
    """Run the block (a request's decoding, forward pass and search), then hand free memory
    back to the system if the uploads held more than :data:`TRIM_ABOVE` pixels."""
    try:
        yield
    finally:
        if sum(upload.pixels for upload in uploads) > TRIM_ABOVE:
            release_memory()


@functools.cache
def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's ``malloc_trim``, or ``None`` on another C library."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_memory() -> bool:
    """Return the C heap's free memory to the system (glibc); whether it could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
