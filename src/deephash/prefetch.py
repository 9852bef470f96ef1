"""Producing the next items of an iterator in a background thread.

Decoding a batch of images (file reads, libjpeg, resizing: C code that releases the GIL)
can then run while the main thread waits on the model's forward pass of the previous
batch, without the cost of worker processes. Measured on 2 cores with OpenVINO using both
(benchmarks/results/extraction.json), a thread keeps more of the bare forward rate than
decoding between forward passes, and far more than decoding processes, which compete for
the cores with the runtime's threads.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextlib.contextmanager
def prefetching(items: Iterable[T], depth: int = 2) -> Iterator[Iterator[T]]:
    """``with prefetching(items) as ahead:`` -- iterate ``ahead`` for the items of
    ``items``, in order, produced up to ``depth`` ahead by a thread. Leaving the block
    (early, or by an exception) stops the thread before it produces another item."""
    stream = prefetched(items, depth)
    try:
        yield stream
    finally:
        stream.close()


def prefetched(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """The items of ``items``, in order, produced up to ``depth`` ahead by a thread.

    An exception raised while producing is raised here, at the item it replaced. Closing
    the generator (:func:`prefetching` does) stops the thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, not {depth}")
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failure(error))
            return
        offer(_DONE)

    thread = threading.Thread(target=produce, name="deephash-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        thread.join()
