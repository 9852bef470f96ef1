"""Which kind of data set a path holds (``--format auto``), from its names alone.

The rules, first match wins (docs/data.md lists them with examples):

1. a file: a deephash pack (its magic bytes) -> ``pack``; a name ending in ``.csv`` -> ``csv``;
2. ``cifar-10-batches-py`` at or under the folder -> ``cifar10``; torchvision's
   ``MNIST/raw`` or ``FashionMNIST/raw`` -> ``mnist`` / ``fashion-mnist``;
3. ``train.txt``, ``test.txt`` and ``database.txt`` in the folder -> ``lists``;
4. a ``train/`` or a ``test/`` folder -> ``imagefolder`` (which needs both);
5. images in the folder itself -> ``unlabelled``;
6. sub-folders only, each holding images directly -> ``classfolders``.

Anything else is a one-line :class:`DataError` naming what was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from deephash.data.cifar10 import find_cifar10
from deephash.data.files import is_image_name
from deephash.data.mnist import detect_mnist
from deephash.data.packed import is_pack
from deephash.errors import DataError

#: the files of the list-file layout (DeepHash-pytorch, thulab/DeepHash)
LIST_FILES = ("train.txt", "test.txt", "database.txt")

LAYOUTS = ("train.txt + test.txt + database.txt (list files), train/<class>/* + "
           "test/<class>/* (image folder), <class>/* (class folders), images (unlabelled), "
           "cifar-10-batches-py or MNIST/raw; or a .csv file or a pack")


def _holds_images(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image_name(e.name) for e in entries)


def _looks_like_class_folders(root: Path) -> bool:
    """Sub-folders (at least one, hidden ones ignored), each holding images directly."""
    with os.scandir(root) as entries:
        folders = [e.path for e in entries if e.is_dir() and not e.name.startswith(".")]
    return bool(folders) and all(_holds_images(folder) for folder in folders)


def detect_file(path: Path) -> str:
    """``pack`` or ``csv`` for a file; a :class:`DataError` for anything else."""
    if is_pack(path):
        return "pack"
    if path.suffix.lower() == ".csv":
        return "csv"
    raise DataError(f"{path} is a file but neither a deephash pack nor a .csv file; pass a "
                    "data folder, a CSV of path,label,split or a file written by deephash pack")


def detect_folder(root: Path) -> str:
    """The kind of data set in the folder ``root`` (the module docstring's rules 2-6)."""
    if find_cifar10(root) is not None:
        return "cifar10"
    mnist = detect_mnist(root)
    if mnist is not None:
        return mnist
    if all((root / name).is_file() for name in LIST_FILES):
        return "lists"
    if (root / "train").is_dir() or (root / "test").is_dir():  # the reader names what lacks
        return "imagefolder"
    if _holds_images(str(root)):
        return "unlabelled"
    if _looks_like_class_folders(root):
        return "classfolders"
    raise DataError(f"{root} holds no data set deephash recognises; looked for {LAYOUTS} "
                    "(name the kind with --format, e.g. --format unlabelled for a tree of "
                    "photos)")
