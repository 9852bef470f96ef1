"""Data sets read from lines of text: one line per image naming its path, its labels and
(optionally) its split. List files (:mod:`deephash.data.list_files`) and CSV files
(:mod:`deephash.data.csv_data`) read their lines into :class:`ListedRows`;
:class:`ListedDataset` turns them into a pool, checking every line before any work.

The pool holds each path once, in the order of its first line (files in the order the
reader gives them, lines top to bottom). A path on several lines (``train.txt`` and
``database.txt`` both list most training images) must carry the same labels on each; it
belongs to the split of every line that names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deephash.data.files import FileImages, relative_image_path
from deephash.errors import DataError
from deephash.labels import LabelSet

#: the splits a line may name, as ``ImageDataset.parts`` keys; -1 in ``ListedRows.split``
#: is a line without a split
SPLITS = ("train", "query", "database")


@dataclass
class ListedRows:
    """The lines of R images, in file order.

    Attributes:
        paths: ``R`` image paths as written (relative to the image root).
        hot: ``(R, C)`` bool multi-hot labels; an all-false row has no label.
        split: ``(R,)`` int8 index into :data:`SPLITS`, ``-1`` for none; ``None`` when the
            source names no splits (``parts`` is then ``None``).
        files: the files the lines come from.
        file_of: ``(R,)`` index into ``files`` of each line's file.
        line_of: ``(R,)`` 1-based line number of each line in its file.
    """

    paths: list[str]
    hot: np.ndarray
    split: np.ndarray | None
    files: list[Path]
    file_of: np.ndarray
    line_of: np.ndarray

    def where(self, row: int) -> str:
        """``FILE line N`` of line ``row``."""
        return f"{self.files[int(self.file_of[row])]} line {int(self.line_of[row])}"


class ListedDataset(FileImages):
    """The images of ``rows`` under ``root``, labelled over ``classes`` (``C`` names).

    Raises a one-line :class:`DataError` naming the file and line for a path that leaves
    ``root`` or names no file, a path listed twice with different labels, and a line in a
    split without a label (every image of a split is trained on, queried or retrieved by
    its labels).
    """

    def __init__(self, rows: ListedRows, classes: list[str], root: Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        self.classes = list(classes)
        if rows.hot.shape != (len(rows.paths), len(self.classes)):
            raise ValueError(f"{rows.hot.shape} labels for {len(rows.paths)} lines and "
                             f"{len(self.classes)} classes")
        if rows.split is not None:
            _labelled_splits(rows)
        normal = [self._relative(path, rows, row) for row, path in enumerate(rows.paths)]
        first, pool_of = _first_appearance(normal)
        _same_labels(rows, first, pool_of)
        self.paths = [normal[row] for row in first]
        self._exist(rows, first)
        self.labels = LabelSet.from_multi_hot(rows.hot[first])
        self.is_test = np.zeros(len(first), dtype=bool)
        if rows.split is not None:
            self.parts = {name: np.unique(pool_of[rows.split == code]).astype(np.int64)
                          for code, name in enumerate(SPLITS)}
            self.is_test[self.parts["query"]] = True
        self.check()

    def _relative(self, path: str, rows: ListedRows, row: int) -> str:
        normal = relative_image_path(self.root, path)
        if normal is None:
            raise DataError(f"{rows.where(row)}: image path {path!r} leaves {self.root}; name "
                            "images by paths inside the image root (--image-root)")
        return normal

    def _exist(self, rows: ListedRows, first: np.ndarray) -> None:
        root = str(self.root)
        for pool, path in enumerate(self.paths):
            if not os.path.isfile(os.path.join(root, path)):
                raise DataError(f"{rows.where(int(first[pool]))}: no image {path} under "
                                f"{self.root}; fix the path, or pass --image-root with the "
                                "folder the paths are relative to")


def _labelled_splits(rows: ListedRows) -> None:
    """Every line in a split has a label."""
    assert rows.split is not None
    empty = np.flatnonzero((rows.split >= 0) & ~rows.hot.any(axis=1))
    if len(empty):
        row = int(empty[0])
        raise DataError(f"{rows.where(row)}: {rows.paths[row]} has no label; every image of "
                        f"the {SPLITS[rows.split[row]]} split needs at least one")


def _first_appearance(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, pool_of)``: ``(P,)`` the line of each distinct path's first appearance,
    in line order, and ``(R,)`` each line's pool index (its path's rank in ``first``)."""
    if not paths:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    _unique, first, inverse = np.unique(np.asarray(paths), return_index=True,
                                        return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse.ravel()].astype(np.int64)


def _same_labels(rows: ListedRows, first: np.ndarray, pool_of: np.ndarray) -> None:
    """A path on several lines carries the same labels on each."""
    differ = np.flatnonzero((rows.hot != rows.hot[first[pool_of]]).any(axis=1))
    if len(differ):
        row = int(differ[0])
        earlier = int(first[pool_of[row]])
        raise DataError(f"{rows.where(row)}: {rows.paths[row]} has other labels than on "
                        f"{rows.where(earlier)}; give an image the same labels on every line")
