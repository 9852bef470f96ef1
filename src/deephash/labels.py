"""Label sets and relevance: the one place that decides whether two images are relevant.

A :class:`LabelSet` holds the labels of N images over C classes, each image's *set* of
labels, in one of two forms:

* **single** (``is_single``): ``(N,)`` int64 class ids, every image having at most one
  label; ``-1`` marks an unlabelled image. This is the form of every single-label data set
  (CIFAR-10, MNIST, class folders) and keeps their fast paths.
* **multi**: an ``(N, C)`` bool multi-hot matrix (NUS-WIDE, MS-COCO, VOC, MIRFlickr); an
  all-false row is an unlabelled image. Dense bool is 1 byte per image and class: 21 MB for
  a million NUS-WIDE images (C = 21), 80 MB for a million with COCO's 80 classes, so a
  sparse format would buy nothing at the field's sizes.

The form is canonical: a multi-hot matrix (or label lists) with at most one label per image
is stored as ids, so ``is_single`` is a property of the labels, not of how they were
built, and the single-label fast paths apply whenever they can.

**Relevance** (:func:`relevance`, and :func:`batch_relevance` for tensors in a batch): a
query and a database image are relevant when they share at least one label, the
definition of the deep-hashing field (HashNet, DeepHash-pytorch's ``CalcTopMap``). For
single-label sets that is ``q[:, None] == d[None, :]`` exactly, except that an unlabelled
image is relevant to nothing (not even another unlabelled one). Code that asks whether two
images are relevant asks these functions, never ``==`` on class ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from deephash.errors import DataError

UNLABELLED = -1

#: ``grow(name, kept, added)``: the rows of ``kept`` then those of ``added`` (``name``: which
#: array of the label set, ``"ids"`` or ``"hot"``), e.g. :meth:`deephash.growing.Growth.append`
Grow = Callable[[str, np.ndarray, np.ndarray], np.ndarray]


class LabelSet:
    """The labels of N images over ``n_classes`` classes (see the module docstring).

    Build one with :meth:`from_ids`, :meth:`from_multi_hot`, :meth:`from_lists` or
    :func:`as_label_set`; it holds read-only copies of the caller's arrays.
    """

    __slots__ = ("_hot", "_hot_f32", "_ids", "n_classes")

    def __init__(self, ids: np.ndarray | None, hot: np.ndarray | None, n_classes: int) -> None:
        """Internal: exactly one of ``ids`` ``(N,)`` int64 / ``hot`` ``(N, C)`` bool, already
        checked and canonical. Use the constructors."""
        self._ids = ids
        self._hot = hot
        self._hot_f32: np.ndarray | None = None
        self.n_classes = int(n_classes)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_ids(cls, ids: np.ndarray | Sequence[int] | torch.Tensor,
                 n_classes: int | None = None, copy: bool = True) -> LabelSet:
        """``(N,)`` integer class ids in ``[0, n_classes)``, ``-1`` for unlabelled.

        ``n_classes`` defaults to the largest id + 1. ``copy=False`` keeps int64 ``ids``
        themselves (read-only view: the caller never changes those rows; a grown array's
        view, :mod:`deephash.growing`), checked in two passes, nothing copied.
        """
        array = np.asarray(ids)
        if array.ndim != 1:
            raise DataError(f"class ids must be one per image, shape (N,), not {array.shape}")
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise DataError("class ids must be integers")
        if array.dtype.kind not in "iubf" and array.size:
            raise DataError(f"class ids must be integers, not {array.dtype}")
        values = array.astype(np.int64, copy=False)
        if values.size and values.min() < UNLABELLED:
            raise DataError(f"class id {int(values.min())} is negative; use -1 for unlabelled")
        largest = int(values.max(initial=UNLABELLED))
        n = largest + 1 if n_classes is None else int(n_classes)
        if largest >= n:
            raise DataError(f"class id {largest} is outside the {n} classes")
        return cls(_read_only(np.array(values) if copy else values), None, n)

    @classmethod
    def from_multi_hot(cls, matrix: np.ndarray | torch.Tensor) -> LabelSet:
        """``(N, C)`` 0/1 or bool matrix; row i marks the classes of image i."""
        array = np.asarray(matrix)
        if array.ndim != 2:
            raise DataError(f"a multi-hot label matrix is (N, C), not {array.shape}")
        if array.dtype != np.bool_ and array.size and not np.isin(array, (0, 1)).all():
            raise DataError("a multi-hot label matrix holds only 0 and 1")
        return cls._canonical(np.array(array, dtype=np.bool_))

    @classmethod
    def from_lists(cls, lists: Iterable[Iterable[int]], n_classes: int | None = None) -> LabelSet:
        """One iterable of class ids per image (an empty one: unlabelled; repeats count
        once). ``n_classes`` defaults to the largest id + 1."""
        rows = [np.unique(np.asarray(list(row), dtype=np.int64)) for row in lists]
        largest = max((int(r[-1]) for r in rows if len(r)), default=-1)
        smallest = min((int(r[0]) for r in rows if len(r)), default=0)
        if smallest < 0:
            raise DataError(f"class id {smallest} is negative; leave the list empty instead")
        n = largest + 1 if n_classes is None else int(n_classes)
        if largest >= n:
            raise DataError(f"class id {largest} is outside the {n} classes")
        hot = np.zeros((len(rows), n), dtype=np.bool_)
        for i, row in enumerate(rows):
            hot[i, row] = True
        return cls._canonical(hot)

    @classmethod
    def _canonical(cls, hot: np.ndarray) -> LabelSet:
        """``(N, C)`` bool -> ids when no row has two labels, else the matrix itself."""
        n_labels = hot.sum(axis=1)
        if (n_labels <= 1).all():
            first = hot.argmax(axis=1) if hot.shape[1] else np.zeros(len(hot), np.int64)
            ids = np.where(n_labels > 0, first, UNLABELLED).astype(np.int64)
            return cls(_read_only(ids), None, hot.shape[1])
        return cls(None, _read_only(hot), hot.shape[1])

    def followed_by(self, more: LabelSet, n_classes: int = 0,
                    grow: Grow | None = None) -> LabelSet:
        """These images' labels then ``more``'s, over the widest of ``n_classes`` and both
        sets' classes.

        ``grow(name, kept, added)`` returns ``kept``'s rows then ``added``'s (``name``:
        ``"ids"`` or ``"hot"``; default :func:`numpy.concatenate`). With a grower's
        append (:meth:`deephash.growing.Growth.append`) it costs O(len(more)): the ids
        while no image has two labels, the ``(N, C)`` multi-hot matrix once one has. Only a
        change of form (the first image with two labels) or new classes for a multi-hot
        matrix build a new one, O(N).
        """
        width = max(n_classes, self.n_classes, more.n_classes)
        grow = grow or _concatenated
        if self.is_single and more.is_single:
            return LabelSet.from_ids(grow("ids", self.ids, more.ids), width, copy=False)
        if not self.is_single and self.n_classes == width:
            hot = grow("hot", self.multi_hot, _widen(more.multi_hot, width))
        else:
            hot = np.zeros((len(self) + len(more), width), dtype=np.bool_)
            hot[:len(self), :self.n_classes] = self.multi_hot
            hot[len(self):, :more.n_classes] = more.multi_hot
        # some image of either set has two labels: the joined matrix is canonical as it is
        return LabelSet(None, _read_only(hot), width)

    # -- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        array = self._ids if self._ids is not None else self._hot
        assert array is not None
        return len(array)

    def __getitem__(self, rows: np.ndarray | slice | Sequence[int]) -> LabelSet:
        """The label set of the images ``rows`` (int indices, a bool mask or a slice)."""
        if isinstance(rows, (int, np.integer)):
            raise TypeError("select rows with an array or a slice; labels[i] would lose a row")
        if self._ids is not None:
            return LabelSet(_read_only(self._ids[rows]), None, self.n_classes)
        assert self._hot is not None
        return LabelSet._canonical(self._hot[rows])

    @property
    def is_single(self) -> bool:
        """True when no image has two labels (the ``(N,)`` ids form)."""
        return self._ids is not None

    @property
    def ids(self) -> np.ndarray:
        """``(N,)`` int64 class ids, -1 for unlabelled; single-label sets only."""
        if self._ids is None:
            raise ValueError("these labels are multi-label; use multi_hot or relevance()")
        return self._ids

    @property
    def multi_hot(self) -> np.ndarray:
        """``(N, C)`` bool, read-only; for a single-label set computed on first use."""
        if self._hot is None:
            assert self._ids is not None
            hot = np.zeros((len(self._ids), self.n_classes), dtype=np.bool_)
            labelled = np.flatnonzero(self._ids >= 0)
            hot[labelled, self._ids[labelled]] = True
            self._hot = _read_only(hot)
        return self._hot

    @property
    def labelled(self) -> np.ndarray:
        """``(N,)`` bool: the images with at least one label."""
        if self._ids is not None:
            return self._ids >= 0
        return np.asarray(self.multi_hot.any(axis=1))

    @property
    def n_labels(self) -> np.ndarray:
        """``(N,)`` int64 number of labels of each image (0 for unlabelled)."""
        if self._ids is not None:
            return (self._ids >= 0).astype(np.int64)
        return self.multi_hot.sum(axis=1, dtype=np.int64)

    def lists(self) -> list[list[int]]:
        """Each image's class ids, ascending (empty for unlabelled), for display."""
        if self._ids is not None:
            return [[int(i)] if i >= 0 else [] for i in self._ids]
        return [np.flatnonzero(row).tolist() for row in self.multi_hot]

    def as_array(self) -> np.ndarray:
        """``(N,)`` int64 ids (single) or ``(N, C)`` bool (multi), the form files store
        (``y`` of saved embeddings and codes); :func:`as_label_set` reads either back."""
        return self._ids if self._ids is not None else self.multi_hot

    def as_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(N,)`` int64 ids (single) or ``(N, C)`` bool (multi): :func:`batch_relevance`'s
        input."""
        array = self._ids if self._ids is not None else self.multi_hot
        return torch.as_tensor(np.array(array), device=device)

    def _float_hot(self) -> np.ndarray:
        """``(N, C)`` float32 multi-hot (cached): the matmul operand of :func:`relevance`."""
        if self._hot_f32 is None:
            self._hot_f32 = self.multi_hot.astype(np.float32)
        return self._hot_f32

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSet):
            return NotImplemented
        if self.is_single != other.is_single or self.n_classes != other.n_classes:
            return False
        if self.is_single:
            return bool(np.array_equal(self.ids, other.ids))
        return bool(np.array_equal(self.multi_hot, other.multi_hot))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        form = "single" if self.is_single else "multi"
        return f"LabelSet({len(self)} images, {self.n_classes} classes, {form})"


LabelsLike = LabelSet | np.ndarray | Sequence[int] | torch.Tensor


def as_label_set(labels: LabelsLike) -> LabelSet:
    """A :class:`LabelSet` as is; ``(N,)`` ints as class ids; ``(N, C)`` 0/1 as multi-hot."""
    if isinstance(labels, LabelSet):
        return labels
    array = np.asarray(labels)
    if array.ndim == 2:
        return LabelSet.from_multi_hot(array)
    return LabelSet.from_ids(array)


def relevance(query: LabelsLike, database: LabelsLike) -> np.ndarray:
    """``(Q, N)`` bool: query i and database item j share at least one label.

    Single against single is exactly ``q[:, None] == d[None, :]`` with unlabelled queries'
    rows false; single against multi reads columns of the multi-hot matrix; multi against
    multi is one ``(Q, C) @ (C, N)`` float32 product (exact: counts <= C), so memory is a
    few bytes per pair: pass a chunk of queries at a time for a large database.
    """
    q, d = as_label_set(query), as_label_set(database)
    if q.is_single and d.is_single:
        same = q.ids[:, None] == d.ids[None, :]
        unlabelled = q.ids < 0
        if unlabelled.any():
            same &= ~unlabelled[:, None]
        return same
    if q.is_single:
        return np.ascontiguousarray(_columns(d.multi_hot, q.ids).T)
    if d.is_single:
        return _columns(q.multi_hot, d.ids)
    width = max(q.n_classes, d.n_classes)
    return (_widen(q._float_hot(), width) @ _widen(d._float_hot(), width).T) > 0


def batch_relevance(labels: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, B')`` bool relevance of tensors, on their device: ``(B,)`` int64 ids (-1 =
    unlabelled) or ``(B, C)`` bool/0-1 multi-hot rows, against ``other`` (same form; default
    ``labels`` itself, giving ``(B, B)``). The same semantics as :func:`relevance`; the
    diagonal of a labelled image is true (callers exclude it)."""
    other = labels if other is None else other
    if labels.dim() != other.dim() or labels.dim() not in (1, 2):
        raise ValueError("relevance compares (B,) ids with ids or (B, C) rows with rows")
    if labels.dim() == 1:
        return (labels[:, None] == other[None, :]) & (labels >= 0)[:, None]
    return (labels.float() @ other.float().T) > 0


def _columns(hot: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(N, C)`` bool and ``(Q,)`` ids -> ``(N, Q)``: column ``ids[i]``, false for -1 or an
    id past the matrix's classes."""
    inside = (ids >= 0) & (ids < hot.shape[1])
    picked = hot[:, np.where(inside, ids, 0)]
    if not inside.all():
        picked &= inside[None, :]
    return picked


def _widen(matrix: np.ndarray, width: int) -> np.ndarray:
    """``(N, C)`` -> ``(N, width)``, zero columns appended."""
    if matrix.shape[1] == width:
        return matrix
    return np.pad(matrix, ((0, 0), (0, width - matrix.shape[1])))


def _concatenated(name: str, kept: np.ndarray, added: np.ndarray) -> np.ndarray:
    """:data:`Grow` without spare room: a new array."""
    return np.concatenate([kept, added])


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


__all__ = ["UNLABELLED", "LabelSet", "LabelsLike", "as_label_set", "batch_relevance",
           "relevance"]
