"""Background prefetching: order, look-ahead bound, errors at their place, clean stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from deephash.prefetch import prefetched, prefetching


def counting(n: int, produced: list[int], fail_at: int | None = None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise OSError(f"item {i} unreadable")
        produced.append(i)
        yield i


def wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.005)


def test_items_come_in_order_and_are_produced_ahead_but_boundedly() -> None:
    produced: list[int] = []
    with prefetching(counting(50, produced), depth=3) as ahead:
        assert next(ahead) == 0
        wait_for(lambda: len(produced) >= 5)
        time.sleep(0.05)  # would it go further?
        # one handed out, three queued, one held while the queue is full
        assert len(produced) == 5
        assert list(ahead) == list(range(1, 50))
    assert not any(t.name == "deephash-prefetch" for t in threading.enumerate())


def test_a_producer_error_is_raised_at_the_item_it_replaced() -> None:
    produced: list[int] = []
    got = []
    with pytest.raises(OSError, match="item 7 unreadable"):
        for item in prefetched(counting(20, produced, fail_at=7)):
            got.append(item)
    assert got == list(range(7))


def test_leaving_early_stops_the_thread() -> None:
    produced: list[int] = []
    with pytest.raises(RuntimeError), prefetching(counting(10_000, produced), depth=2) as ahead:
        for item in ahead:
            if item == 3:
                raise RuntimeError("consumer gives up")
    assert not any(t.name == "deephash-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 1 + 2 + 1  # consumed, queued, one in hand


def test_empty_input_and_bad_depth() -> None:
    assert list(prefetched(iter([]))) == []
    with pytest.raises(ValueError, match="depth"):
        list(prefetched(iter([1]), depth=0))
