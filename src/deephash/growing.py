"""Append-only arrays with spare capacity: adding B rows to N costs O(B), not O(N).

A served index grows by small batches while queries read the state before the batch, so
its arrays are never changed in place where a reader can see it. :class:`GrowingArray`
keeps one buffer with room to spare (its capacity doubles when it runs out, so a row is
copied O(1) times on average) and hands out views of its first rows: ``append(view,
rows)`` writes ``rows`` after the filled rows and returns a view of them all. A view
handed out earlier keeps its length, so it sees only its own rows and nothing a reader
holds changes.

Appending after an older view than the latest (a branch: two states grown from the same
one) must not overwrite the rows the newer view sees, so it copies into a new buffer
instead (which the grower then follows); so does a view that is not of this buffer at all
(the first append, an array loaded from disk) and a row that needs a wider dtype (a path
longer than the buffer's unicode width).
"""

from __future__ import annotations

import numpy as np

#: the fewest rows a new buffer holds
MIN_CAPACITY = 16


class GrowingArray:
    """One lineage of ``(N, ...)`` arrays (1-D or 2-D) that grow by appended rows."""

    def __init__(self) -> None:
        self._buffer: np.ndarray | None = None  # (capacity, ...) the rows and spare room
        self._filled = 0  # rows of the buffer handed out in the latest view

    @property
    def capacity(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    def append(self, view: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``view`` followed by ``rows`` (``(B, ...)``, cast to ``view``'s dtype, a unicode
        dtype widened to the longer of both): a view of the buffer's first ``N + B``
        rows. ``view`` and every view handed out before are left as they are."""
        rows = np.asarray(rows)
        dtype = _dtype(view.dtype, rows.dtype)
        if rows.shape[1:] != view.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} cannot follow rows of shape "
                             f"{view.shape[1:]}")
        n, total = len(view), len(view) + len(rows)
        buffer = self._buffer
        if (buffer is None or not self._latest(view) or buffer.dtype != dtype
                or total > len(buffer)):
            buffer = np.empty((max(2 * total, MIN_CAPACITY), *view.shape[1:]), dtype=dtype)
            buffer[:n] = view
            self._buffer = buffer
        buffer[n:total] = rows
        self._filled = total
        return buffer[:total]

    def _latest(self, view: np.ndarray) -> bool:
        """Whether ``view`` is the latest view handed out (the buffer's filled prefix)."""
        buffer = self._buffer
        assert buffer is not None
        return (len(view) == self._filled and view.base is buffer
                and view.dtype == buffer.dtype and view.strides == buffer.strides
                and view.__array_interface__["data"][0]
                == buffer.__array_interface__["data"][0])


def _dtype(kept: np.dtype, added: np.dtype) -> np.dtype:
    """The buffer's dtype for rows of ``added`` after rows of ``kept``: ``kept``, a unicode
    one as wide as the wider of both."""
    if kept.kind == "U" and added.kind in "US":
        width = added.itemsize // 4 if added.kind == "U" else added.itemsize
        if width > kept.itemsize // 4:
            return np.dtype(f"<U{width}")
    return kept


class Growth:
    """The growers of one state's named arrays (``"vectors"``, ``"paths"``...), handed from
    a state to the state grown from it."""

    def __init__(self) -> None:
        self._arrays: dict[str, GrowingArray] = {}

    def append(self, name: str, view: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:meth:`GrowingArray.append` of the array ``name``."""
        return self._arrays.setdefault(name, GrowingArray()).append(view, rows)
