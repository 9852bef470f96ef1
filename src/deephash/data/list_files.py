"""List files, the layout the deep-hashing field publishes its benchmarks in
(DeepHash-pytorch, thulab/DeepHash): a folder holding ``train.txt``, ``test.txt`` and
``database.txt``, one line per image::

    data/nus_wide/images/0001.jpg 0 1 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0

a path (no spaces; relative to the folder, or to ``--image-root``) and C values 0 or 1,
the same C on every line of the three files. ``classes.txt`` beside them, if present,
names the classes (one per line, C lines); else they are named ``0`` .. ``C-1``.

The pool is every distinct path, in the order of first appearance reading ``train.txt``,
then ``database.txt``, then ``test.txt`` (see :mod:`deephash.data.listed`); ``parts`` are
the files' images (train: ``train.txt``, query: ``test.txt``, database: ``database.txt``)
and ``is_test`` marks ``test.txt``'s. Every line needs a label (an all-zero vector is an
error). Parsing is linear: one ``split`` per line, the values compared as one array.
Paths hold no spaces (the field's lists split lines on whitespace too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.data.listed import SPLITS, ListedDataset, ListedRows
from deephash.errors import DataError

#: (file, split) in the order the pool reads them
LIST_SPLITS = (("train.txt", "train"), ("database.txt", "database"), ("test.txt", "query"))
CLASSES_FILE = "classes.txt"


def read_text_lines(path: Path) -> list[str]:
    """The lines of the UTF-8 text file ``path``; a one-line :class:`DataError` when it
    cannot be read."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path.parent} has no {path.name}; list files are train.txt, "
                        "test.txt and database.txt (one 'path 0 1 0 ...' line per image)"
                        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def _parse(path: Path, width: int | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(paths, hot (n, C) bool, line numbers (n,))`` of one list file; ``width`` is C
    when the first file (``train.txt``) fixed it."""
    lines = read_text_lines(path)
    numbers = [i for i, line in enumerate(lines, 1) if line.strip()]
    fields = [lines[i - 1].split() for i in numbers]
    if not fields:
        raise DataError(f"{path} lists no images; give one 'path 0 1 0 ...' line per image")
    counts = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields)) - 1
    width = int(counts[0]) if width is None else width
    wrong = np.flatnonzero(counts != width)
    if len(wrong):
        row = int(wrong[0])
        raise DataError(f"{path} line {numbers[row]}: {counts[row]} label values, not "
                        f"{width} as on the first line of {LIST_SPLITS[0][0]}; a line is a "
                        "path and one 0 or 1 per class")
    if width == 0:
        raise DataError(f"{path} line {numbers[0]}: no label values; a line is a path and "
                        "one 0 or 1 per class")
    values = np.asarray([f[1:] for f in fields]).reshape(len(fields), width)
    hot = values == "1"
    bad = np.flatnonzero(~(hot | (values == "0")).all(axis=1))
    if len(bad):
        row = int(bad[0])
        value = next(str(v) for v in values[row] if v not in ("0", "1"))
        raise DataError(f"{path} line {numbers[row]}: label value {value!r} is not 0 or 1")
    return [f[0] for f in fields], hot, np.asarray(numbers, dtype=np.int64)


def _class_names(folder: Path, width: int) -> list[str]:
    """``classes.txt``'s names (``width`` of them), else ``"0"`` .. ``"C-1"``."""
    path = folder / CLASSES_FILE
    if not path.is_file():
        return [str(c) for c in range(width)]
    names = [line.strip() for line in read_text_lines(path)]
    while names and not names[-1]:
        names.pop()
    if len(names) != width:
        raise DataError(f"{path} names {len(names)} classes, the list files have {width} "
                        "label values per line; give one class name per line")
    for number, name in enumerate(names, 1):
        if not name or name in names[:number - 1]:
            raise DataError(f"{path} line {number}: {'an empty' if not name else 'a repeated'}"
                            f" class name {name!r}; give each class one name")
    return names


def read_list_files(folder: Path, image_root: Path | None = None) -> ListedDataset:
    """The data set of the list files in ``folder`` (see the module docstring), images
    under ``image_root`` (default ``folder``)."""
    folder = Path(folder)
    paths: list[str] = []
    hots, splits, files, lines = [], [], [], []
    width: int | None = None
    for index, (name, split) in enumerate(LIST_SPLITS):
        found, hot, numbers = _parse(folder / name, width)
        width = hot.shape[1]
        paths.extend(found)
        hots.append(hot)
        splits.append(np.full(len(found), SPLITS.index(split), dtype=np.int8))
        files.append(np.full(len(found), index, dtype=np.int64))
        lines.append(numbers)
    assert width is not None
    rows = ListedRows(paths, np.concatenate(hots), np.concatenate(splits),
                      [folder / name for name, _split in LIST_SPLITS], np.concatenate(files),
                      np.concatenate(lines))
    return ListedDataset(rows, _class_names(folder, width),
                         folder if image_root is None else image_root,
                         f"{folder.name} (list files)")
