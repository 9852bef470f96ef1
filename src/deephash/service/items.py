"""What an index folder knows of each indexed image: its path, its labels and the classes.

``items.npz`` holds per row ``paths`` (relative to the data root, or a data set's own
description such as ``cifar10:test[17]``), ``labels`` and the ``classes`` (their names)
and, since images can be added to an index, ``local`` (the path is relative to the index
folder: an added image kept in ``added/``). ``labels`` is what
:meth:`~deephash.labels.LabelSet.as_array` gives: ``(N,)`` int64 class ids (``-1``: none)
when no image has two labels, as every folder written before label sets holds, else an
``(N, C)`` bool multi-hot matrix over the ``C`` classes. Folders written before ``local``
existed read as all ``False``. Row ``r`` is item id ``r``.

An item's record (:meth:`Items.describe`, what the service answers and ``search`` prints)
lists its labels' names (``labels``; empty: unlabelled); ``label`` and ``class`` are its
one label's number and name, ``null`` when it has none or several. Whether a hit is
relevant to a query item is :func:`deephash.labels.relevance`'s answer: they share a label
(:meth:`Items.shares_label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError, DataError
from deephash.fileio import load_npz, npz_array, save_npz
from deephash.growing import Growth
from deephash.labels import UNLABELLED, LabelSet, relevance


@dataclass(frozen=True)
class Items:
    paths: np.ndarray  # (N,) str
    labels: LabelSet  # N images over at least len(classes) classes
    classes: tuple[str, ...]
    local: np.ndarray  # (N,) bool: the path is relative to the index folder

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def load(cls, path: Path) -> Items:
        """The items saved at ``path``, their structure checked (text paths and classes,
        integer ids or a boolean multi-hot matrix over the classes, boolean ``local``, one
        row each): anything else is a one-line ``ConfigError`` naming the file."""
        try:
            return cls.from_arrays(load_npz(path))
        except (OSError, ValueError, DataError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"cannot read {path}: {reason}; rebuild with deephash "
                              "index") from None

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Items:
        """The items of :meth:`save`'s arrays (an append segment holds them too), their
        structure checked: ``ValueError`` or ``DataError`` naming the problem."""
        paths = npz_array(arrays, "paths", "U", 1)
        classes = tuple(str(c) for c in npz_array(arrays, "classes", "U", 1))
        labels = _read_labels(arrays, len(classes))
        local = (np.asarray(npz_array(arrays, "local", "b", 1), dtype=bool)
                 if "local" in arrays else np.zeros(len(paths), dtype=bool))
        if not len(paths) == len(labels) == len(local):
            raise ValueError(f"it has {len(paths)} paths, {len(labels)} labels and "
                             f"{len(local)} local flags")
        return cls(paths.astype(str), labels, classes, local)

    def save(self, path: Path) -> None:
        save_npz(path, **self.arrays())

    def arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`save` writes (``paths``, ``labels``, ``classes``, ``local``)."""
        return {"paths": self.paths, "labels": self.labels.as_array(),
                "classes": np.array(self.classes), "local": self.local}

    def joined(self, more: Items, growth: Growth | None = None) -> Items:
        """These items followed by ``more`` (an append segment's), whose classes extend
        these items' classes; ``ValueError`` when they do not. ``growth``: the growers
        of these items' arrays (O(len(more)), :meth:`LabelSet.followed_by`; ``None``: new
        arrays)."""
        if more.classes[:len(self.classes)] != self.classes:
            raise ValueError("its classes do not extend the folder's")
        growth = Growth() if growth is None else growth
        labels = self.labels.followed_by(more.labels, len(more.classes), growth.append)
        return Items(growth.append("paths", _text(self.paths), _text(more.paths)), labels,
                     more.classes, growth.append("local", self.local, more.local))

    def with_spare_room(self, growth: Growth, path_width: int = 0) -> Items:
        """These items with their arrays in ``growth``'s spare room (one O(N) copy each
        now, instead of in the first :meth:`joined` with ``growth``), the paths' room
        holding paths of at least ``path_width`` characters (a longer one copies again)."""
        paths = _text(self.paths)
        width = max(path_width, paths.dtype.itemsize // 4, 1)
        return self.joined(Items(np.empty(0, dtype=f"<U{width}"), self.labels[0:0],
                                 self.classes, self.local[:0]), growth)

    @property
    def multi_label(self) -> bool:
        """Whether some item has two or more labels."""
        return not self.labels.is_single

    def label_ids(self, row: int) -> list[int]:
        """Item ``row``'s class ids, ascending (empty: unlabelled)."""
        if self.labels.is_single:
            label = int(self.labels.ids[row])
            return [label] if label >= 0 else []
        return np.flatnonzero(self.labels.multi_hot[row]).tolist()

    def class_name(self, label: int) -> str | None:
        """The name of class ``label`` (``None`` for a number past the classes: an old
        folder's label without a name)."""
        return self.classes[label] if 0 <= label < len(self.classes) else None

    def describe(self, row: int) -> dict[str, Any]:
        """The JSON record of item ``row``: ``{"id", "label", "class", "labels", "path"}``
        (module docstring), the path as stored (relative to the data root, or to the index
        folder for an added image)."""
        ids = self.label_ids(row)
        one = ids[0] if len(ids) == 1 else None
        return {"id": int(row), "label": one,
                "class": None if one is None else self.class_name(one),
                "labels": [self.label_name(label) for label in ids], "path": str(self.paths[row])}

    def label_name(self, label: int) -> str:
        """Class ``label``'s name, or its number where it has none."""
        name = self.class_name(label)
        return str(label) if name is None else name

    def shares_label(self, query: LabelSet, rows: np.ndarray) -> list[bool | None]:
        """Per row of ``rows``: whether that item shares a label with the one image of
        ``query`` (:func:`~deephash.labels.relevance`); ``None`` where the query or the
        item has no label (nothing is known either way)."""
        found = self.labels[np.asarray(rows, dtype=np.int64)]
        shared = relevance(query, found)[0]
        known = found.labelled & bool(query.labelled[0])
        return [bool(s) if k else None for s, k in zip(shared, known, strict=True)]

    def label_of(self, given: str) -> tuple[int, tuple[str, ...]]:
        """The label of ``given`` (a class name, or a class number) and the classes with a
        new name appended."""
        return _class_of(given, self.classes)

    def labels_of(self, given: Sequence[str]) -> tuple[list[int], tuple[str, ...]]:
        """The class ids of the labels ``given`` (names or numbers, each read as
        :meth:`label_of` reads it; repeats count once), ascending, and the classes with
        the new names appended."""
        ids: set[int] = set()
        classes = self.classes
        for name in given:
            label, classes = _class_of(name, classes)
            ids.add(label)
        return sorted(ids), classes

    def extended(self, paths: list[str], labels: Sequence[int],
                 classes: tuple[str, ...]) -> Items:
        """These items followed by added images at ``paths`` (relative to the index folder),
        each labelled with the class ids ``labels`` (empty: unlabelled) under ``classes``."""
        n = len(paths)
        return Items(np.concatenate([self.paths.astype(str), np.array(paths, dtype=str)]),
                     _appended(self.labels, list(labels), n, len(classes)), classes,
                     np.concatenate([self.local, np.ones(n, dtype=bool)]))


def _class_of(given: str, classes: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """The class id of ``given`` (a name of ``classes``, a class number, or a new name:
    appended) and the classes."""
    given = given.strip()
    if given in classes:
        return classes.index(given), classes
    if given.lstrip("-").isdigit():
        label = int(given)
        if not classes:
            raise ConfigError(f"label {label}: this index has no classes to number; give a "
                              "class name")
        if not 0 <= label < len(classes):
            raise ConfigError(f"label {label} is not a class number (0..{len(classes) - 1}); "
                              "give a class number or a class name")
        return label, classes
    if not given or len(given) > 100 or not given.isprintable():
        raise ConfigError("label must be a class name of 1 to 100 printable characters or a "
                          "class number; fix the label field")
    return len(classes), (*classes, given)


def _read_labels(arrays: dict[str, np.ndarray], n_classes: int) -> LabelSet:
    """``labels`` of ``items.npz``: ``(N,)`` ids (an old folder's ids past the classes are
    kept, without a name) or ``(N, C)`` bool over the ``n_classes`` classes."""
    if "labels" in arrays and arrays["labels"].ndim == 2:
        hot = npz_array(arrays, "labels", "b", 2)
        if hot.shape[1] != n_classes:
            raise ValueError(f"its labels cover {hot.shape[1]} classes, its classes are "
                             f"{n_classes}")
        return LabelSet.from_multi_hot(hot)
    ids = np.asarray(npz_array(arrays, "labels", "iu", 1), dtype=np.int64)
    return LabelSet.from_ids(ids, max(n_classes, int(ids.max(initial=UNLABELLED)) + 1))


def _appended(labels: LabelSet, row: list[int], n: int, n_classes: int) -> LabelSet:
    """``labels`` followed by ``n`` images labelled ``row`` (class ids), over ``n_classes``
    classes (at least ``labels``'s): ids while every image has at most one label."""
    width = max(n_classes, labels.n_classes)
    if labels.is_single and len(row) <= 1:
        added = np.full(n, row[0] if row else UNLABELLED, dtype=np.int64)
        return LabelSet.from_ids(np.concatenate([labels.ids, added]), width)
    hot = np.zeros((len(labels) + n, width), dtype=np.bool_)
    hot[:len(labels), :labels.n_classes] = labels.multi_hot
    hot[len(labels):, row] = True
    return LabelSet.from_multi_hot(hot)


def _text(paths: np.ndarray) -> np.ndarray:
    """``paths`` as a unicode array (itself when it is one)."""
    return paths if paths.dtype.kind == "U" else paths.astype(str)


