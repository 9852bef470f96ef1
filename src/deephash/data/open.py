"""Find and open a data set from ``--data-dir`` / ``DEEPHASH_DATA``."""

from __future__ import annotations

import os
from pathlib import Path

from deephash.data.cifar10 import Cifar10Dataset, download_cifar10, find_cifar10
from deephash.data.dataset import ImageDataset
from deephash.data.image_folder import ImageFolderDataset
from deephash.data.mnist import (
    VARIANTS,
    MnistDataset,
    detect_mnist,
    download_mnist,
    find_mnist,
    missing_mnist_files,
)
from deephash.data.packed import PackedDataset, is_pack
from deephash.errors import DataError
from deephash.registries import DATASET_KINDS

DOWNLOADABLE = ("cifar10", *VARIANTS)
DEFAULT_DOWNLOAD_DIR = Path("~/.cache/deephash/data").expanduser()


def resolve_data_dir(data_dir: str | None, dataset: str) -> Path:
    """``data_dir``, else ``$DEEPHASH_DATA``, else (CIFAR-10 only) a download folder."""
    chosen = data_dir or os.environ.get("DEEPHASH_DATA")
    if chosen:
        return Path(chosen).expanduser()
    if dataset in DOWNLOADABLE:
        return DEFAULT_DOWNLOAD_DIR
    raise DataError("no data location: pass --data-dir DIR or set DEEPHASH_DATA "
                    "(or --dataset cifar10|mnist|fashion-mnist to download one)")


def open_dataset(data_dir: str | None, dataset: str = "auto", download: bool = True,
                 fingerprint_memo: Path | None = None) -> ImageDataset:
    """Open an image folder, an official release (CIFAR-10, MNIST, Fashion-MNIST) or a
    pack file written by ``deephash pack`` (recognised by its magic bytes).

    ``auto`` picks CIFAR-10 when ``cifar-10-batches-py`` is at or under the folder, MNIST or
    Fashion-MNIST when torchvision's ``MNIST/raw`` or ``FashionMNIST/raw`` is under it, else
    an image folder (``train/`` and ``test/``). ``cifar10``, ``mnist`` and
    ``fashion-mnist`` download the release when it is missing and ``download`` is set.
    The data set remembers its content digest in ``fingerprint_memo`` (the feature cache's
    :func:`~deephash.data.fingerprint.memo_location`; ``None``: nowhere).
    """
    opened = _open(data_dir, dataset, download)
    opened.fingerprint_memo = fingerprint_memo
    return opened


def _open(data_dir: str | None, dataset: str, download: bool) -> ImageDataset:
    if dataset not in DATASET_KINDS:
        raise DataError(f"unknown dataset kind {dataset!r}; known: {', '.join(DATASET_KINDS)}")
    root = resolve_data_dir(data_dir, dataset)
    if root.is_file():
        return _open_file(root, dataset)
    if dataset not in DOWNLOADABLE and not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass --data-dir with an existing "
                        "folder (or set DEEPHASH_DATA)")
    if dataset == "auto" and root.is_dir():
        dataset = detect_mnist(root) or dataset
    if dataset in VARIANTS:
        folder = find_mnist(root, dataset) if root.is_dir() else None
        if folder is None:
            if not download:
                raise DataError(f"no {VARIANTS[dataset].title} in {root}: missing "
                                f"{', '.join(missing_mnist_files(root))} (raw or .gz); allow "
                                "--download or put the four official IDX files there")
            root.mkdir(parents=True, exist_ok=True)
            folder = download_mnist(root, dataset)
        return MnistDataset(folder, dataset)
    cifar = find_cifar10(root) if root.is_dir() else None
    if dataset == "cifar10" or (dataset == "auto" and cifar is not None):
        if cifar is None:
            if not download:
                raise DataError(f"no {root}/cifar-10-batches-py; allow --download or extract "
                                "the official release there")
            root.mkdir(parents=True, exist_ok=True)
            cifar = download_cifar10(root)
        return Cifar10Dataset(cifar)
    if dataset == "auto" and not (root / "train").is_dir():
        raise DataError(f"{root} holds neither cifar-10-batches-py nor an image folder "
                        "(train/<class>/*, test/<class>/*)")
    return ImageFolderDataset(root)


def _open_file(path: Path, dataset: str) -> PackedDataset:
    """A pack file (``--dataset auto`` or ``imagefolder``: it holds image files)."""
    if not is_pack(path):
        raise DataError(f"{path} is a file but not a deephash pack; pass a data folder or a "
                        "file written by deephash pack DATA_DIR FILE")
    if dataset not in ("auto", "imagefolder"):
        raise DataError(f"{path} is a deephash pack, not the official {dataset} release; "
                        "open it with --dataset auto")
    return PackedDataset(path)
