"""Find and open a data set from ``--data-dir`` / ``DEEPHASH_DATA`` and ``--format``."""

from __future__ import annotations

import os
from pathlib import Path

from deephash.data.cifar10 import Cifar10Dataset, download_cifar10, find_cifar10
from deephash.data.csv_data import read_csv
from deephash.data.dataset import ImageDataset
from deephash.data.detect import detect_file, detect_folder
from deephash.data.image_folder import ClassFolderDataset, ImageFolderDataset
from deephash.data.list_files import read_list_files
from deephash.data.mnist import (
    VARIANTS,
    MnistDataset,
    download_mnist,
    find_mnist,
    missing_mnist_files,
)
from deephash.data.packed import PackedDataset
from deephash.errors import DataError
from deephash.registries import DATASET_KINDS

DOWNLOADABLE = ("cifar10", *VARIANTS)
DEFAULT_DOWNLOAD_DIR = Path("~/.cache/deephash/data").expanduser()
#: the kinds whose images are files, which a pack of them opens under too
FILE_KINDS = ("imagefolder", "classfolders", "lists", "csv", "unlabelled")
#: the kinds that name their images by paths, relative to ``--image-root`` when given
ROOTED_KINDS = ("lists", "csv")


def resolve_data_dir(data_dir: str | None, dataset: str) -> Path:
    """``data_dir``, else ``$DEEPHASH_DATA``, else (CIFAR-10 only) a download folder."""
    chosen = data_dir or os.environ.get("DEEPHASH_DATA")
    if chosen:
        return Path(chosen).expanduser()
    if dataset in DOWNLOADABLE:
        return DEFAULT_DOWNLOAD_DIR
    raise DataError("no data location: pass --data-dir DIR or set DEEPHASH_DATA "
                    "(or --format cifar10|mnist|fashion-mnist to download one)")


def open_dataset(data_dir: str | None, dataset: str = "auto", download: bool = True,
                 fingerprint_memo: Path | None = None,
                 image_root: str | None = None) -> ImageDataset:
    """Open the data set at ``data_dir`` of kind ``dataset`` (``--format``; see
    :mod:`deephash.data.detect` for what ``auto`` picks and docs/data.md for every kind).

    ``cifar10``, ``mnist`` and ``fashion-mnist`` download the release when it is missing
    and ``download`` is set. ``image_root`` (``--image-root``) is the folder the paths of
    list files and CSV files are relative to (default: the lists' folder, the CSV's
    folder). The data set remembers its content digest in ``fingerprint_memo`` (the
    feature cache's :func:`~deephash.data.fingerprint.memo_location`; ``None``: nowhere).
    """
    opened = _open(data_dir, dataset, download,
                   None if image_root is None else Path(image_root).expanduser())
    opened.fingerprint_memo = fingerprint_memo
    return opened


def _open(data_dir: str | None, dataset: str, download: bool,
          image_root: Path | None) -> ImageDataset:
    if dataset not in DATASET_KINDS:
        raise DataError(f"unknown data kind {dataset!r}; known: {', '.join(DATASET_KINDS)}")
    root = resolve_data_dir(data_dir, dataset)
    if root.is_file():
        kind = detect_file(root)
        if kind == "pack":
            return _open_pack(root, dataset, image_root)
        dataset = _named(dataset, kind, root)
    elif dataset not in DOWNLOADABLE and not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data-dir with an existing "
                        "folder (or set DEEPHASH_DATA)")
    elif dataset == "csv":
        raise DataError(f"--format csv reads a CSV file; pass the file as --data-dir, not the "
                        f"folder {root}")
    elif dataset == "auto":
        dataset = detect_folder(root)
    if image_root is not None and dataset not in ROOTED_KINDS:
        raise DataError(f"--image-root applies to list files and CSV files; {root} holds "
                        f"{dataset} data: drop --image-root")
    if dataset in VARIANTS:
        return _open_mnist(root, dataset, download)
    if dataset == "cifar10":
        return _open_cifar10(root, download)
    if dataset == "csv":
        return read_csv(root, image_root)
    if dataset == "lists":
        return read_list_files(root, image_root)
    if dataset == "classfolders":
        return ClassFolderDataset(root)
    if dataset == "unlabelled":
        from deephash.data.unlabelled import UnlabelledFolderDataset

        return UnlabelledFolderDataset(root)
    return ImageFolderDataset(root)


def _named(dataset: str, kind: str, path: Path) -> str:
    """``kind`` (detected from the file ``path``) when ``--format`` agrees with it."""
    if dataset not in ("auto", kind):
        raise DataError(f"{path} is a {kind} file, not {dataset} data; open it with "
                        f"--format auto or --format {kind}")
    return kind


def _open_mnist(root: Path, dataset: str, download: bool) -> MnistDataset:
    folder = find_mnist(root, dataset) if root.is_dir() else None
    if folder is None:
        if not download:
            raise DataError(f"no {VARIANTS[dataset].title} in {root}: missing "
                            f"{', '.join(missing_mnist_files(root))} (raw or .gz); allow "
                            "--download or put the four official IDX files there")
        root.mkdir(parents=True, exist_ok=True)
        folder = download_mnist(root, dataset)
    return MnistDataset(folder, dataset)


def _open_cifar10(root: Path, download: bool) -> Cifar10Dataset:
    cifar = find_cifar10(root) if root.is_dir() else None
    if cifar is None:
        if not download:
            raise DataError(f"no {root}/cifar-10-batches-py; allow --download or extract "
                            "the official release there")
        root.mkdir(parents=True, exist_ok=True)
        cifar = download_cifar10(root)
    return Cifar10Dataset(cifar)


def _open_pack(path: Path, dataset: str, image_root: Path | None) -> PackedDataset:
    """A pack file: it holds image files of any kind (``--format auto`` or a file kind)."""
    if dataset not in ("auto", *FILE_KINDS):
        raise DataError(f"{path} is a deephash pack, not the official {dataset} release; "
                        "open it with --format auto")
    if image_root is not None:
        raise DataError(f"{path} is a deephash pack: it holds its images, drop --image-root")
    return PackedDataset(path)
