"""A CSV file of images (open-metric-learning's layout)::

    path,label,split
    images/0001.jpg,cat,train
    images/0002.jpg,cat|dog,test
    images/0003.jpg,,database

Columns (by header name; others are ignored):

* ``path`` (required): the image, relative to the CSV's folder or to ``--image-root``;
* ``label`` (optional): the image's labels separated by ``|`` (``cat|dog``), each a class
  name (an integer like ``3`` is a name too); empty: no label. Classes are the names
  found, sorted (as numbers when every name is an integer, else as text, as class folders
  sort); without the column every image is unlabelled;
* ``split`` (optional): ``train``, ``test`` or ``database``. ``test`` images are the
  queries and the official test part (``is_test``); the database is the ``database``
  images, or the ``train`` images when no row says ``database`` (the ``cifar10``
  protocol's convention). open-metric-learning's ``validation`` is its evaluation part:
  with its ``is_query``/``is_gallery`` columns a validation image is a query, a database
  image or both as they say; without them it is a query, as ``test``. Every image of a
  split needs a label. Without the column there is no test part and a protocol draws the
  splits, seeded.

A path on several rows (to put one image in two splits) needs the same labels on each
(:mod:`deephash.data.listed`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from deephash.data.listed import SPLITS, ListedDataset, ListedRows
from deephash.errors import DataError

#: the separator of several labels in one ``label`` field
LABEL_SEPARATOR = "|"
#: ``split`` value -> the splits (:data:`~deephash.data.listed.SPLITS`) a row is in
SPLIT_VALUES = {"train": ("train",), "test": ("query",), "database": ("database",),
                "validation": ("query",)}
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


def _header(path: Path, rows: list[list[str]]) -> dict[str, int]:
    """Column name -> position; a :class:`DataError` without a ``path`` column."""
    if not rows:
        raise DataError(f"{path} is empty; its first line names the columns: path (and "
                        "label, split)")
    names = [name.strip().lower() for name in rows[0]]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{path} line 1: column {repeated[0]!r} is named twice")
    if "path" not in names:
        raise DataError(f"{path} line 1: no 'path' column (the header names "
                        f"{', '.join(map(repr, names))}); name the image column path, the "
                        "labels label and the split split")
    return {name: position for position, name in enumerate(names)}


def _read(path: Path) -> tuple[list[list[str]], list[int]]:
    """The CSV's rows (blank lines left out) and each row's line number."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                        ) from None
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return rows, lines


def _labels(cell: str, where: str) -> list[str]:
    if not cell.strip():
        return []
    names = [name.strip() for name in cell.split(LABEL_SEPARATOR)]
    if not all(names):
        raise DataError(f"{where}: an empty label in {cell!r}; separate labels with "
                        f"{LABEL_SEPARATOR!r}, as cat{LABEL_SEPARATOR}dog")
    return names


def _flag(cell: str, column: str, where: str) -> bool:
    value = cell.strip().lower()
    if value not in _TRUE + _FALSE:
        raise DataError(f"{where}: {column} {cell!r} is not true or false")
    return value in _TRUE


def _splits(row: list[str], columns: dict[str, int], where: str) -> tuple[str, ...]:
    """The splits the row is in (the module docstring's rules)."""
    value = row[columns["split"]].strip().lower()
    if value not in SPLIT_VALUES:
        raise DataError(f"{where}: split {row[columns['split']]!r} is not "
                        f"{', '.join(SPLIT_VALUES)}")
    if value != "validation" or not {"is_query", "is_gallery"} & columns.keys():
        return SPLIT_VALUES[value]
    chosen = tuple(split for column, split in (("is_query", "query"), ("is_gallery", "database"))
                   if column in columns and _flag(row[columns[column]], column, where))
    if not chosen:
        raise DataError(f"{where}: a validation image that is neither a query nor in the "
                        "gallery; set is_query or is_gallery")
    return chosen


def _class_order(names: set[str]) -> list[str]:
    """Sorted as integers when every name is one, else as text."""
    if names and all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _multi_hot(labels: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """The classes (:func:`_class_order`) and the ``(R, C)`` bool matrix of label names."""
    classes = _class_order({name for names in labels for name in names})
    position = {name: c for c, name in enumerate(classes)}
    hot = np.zeros((len(labels), len(classes)), dtype=bool)
    for index, names in enumerate(labels):
        hot[index, [position[name] for name in names]] = True
    return classes, hot


def read_csv(path: Path, image_root: Path | None = None) -> ListedDataset:
    """The data set of the CSV file ``path`` (see the module docstring), images under
    ``image_root`` (default: the CSV's folder)."""
    path = Path(path)
    rows, lines = _read(path)
    columns = _header(path, rows)
    paths: list[str] = []
    labels: list[list[str]] = []
    splits: list[int] = []
    line_of: list[int] = []
    for row, line in zip(rows[1:], lines[1:], strict=True):
        where = f"{path} line {line}"
        if len(row) != len(columns):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(columns)}; "
                            "quote a field that holds a comma")
        names = _labels(row[columns["label"]], where) if "label" in columns else []
        for split in _splits(row, columns, where) if "split" in columns else (None,):
            paths.append(row[columns["path"]].strip())
            labels.append(names)
            splits.append(-1 if split is None else SPLITS.index(split))
            line_of.append(line)
    classes, hot = _multi_hot(labels)
    codes = np.asarray(splits, dtype=np.int8) if "split" in columns else None
    listed = ListedRows(paths, hot, codes, [path], np.zeros(len(paths), dtype=np.int64),
                        np.asarray(line_of, dtype=np.int64))
    dataset = ListedDataset(listed, classes, path.parent if image_root is None else image_root,
                            f"{path.stem} (CSV)")
    if dataset.parts is not None and not len(dataset.parts["database"]):
        dataset.parts["database"] = dataset.parts["train"]
    return dataset
