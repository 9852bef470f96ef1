"""MNIST and Fashion-MNIST in the official IDX format, as torchvision downloads them.

Four files per data set — ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` — raw or gzipped (``.gz``), found in
the folder itself, in ``raw/``, or in torchvision's ``MNIST/raw`` / ``FashionMNIST/raw``.
Both data sets use the same file names, so a bare folder needs ``--format`` to say which.
Images are 28 x 28 grayscale, served as RGB like every other data set.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.errors import DataError
from deephash.labels import LabelSet

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


@dataclass(frozen=True)
class MnistVariant:
    name: str            # the --format kind
    title: str
    torchvision_folder: str
    classes: tuple[str, ...]


VARIANTS = {
    "mnist": MnistVariant("mnist", "MNIST", "MNIST", tuple(str(d) for d in range(10))),
    "fashion-mnist": MnistVariant(
        "fashion-mnist", "Fashion-MNIST", "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot")),
}


def _file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist(data_dir: Path, variant: str) -> Path | None:
    """The folder holding all four IDX files of ``variant``, at or under ``data_dir``."""
    tv = VARIANTS[variant].torchvision_folder
    for folder in (data_dir, data_dir / "raw", data_dir / tv / "raw"):
        if not missing_mnist_files(folder):
            return folder
    return None


def missing_mnist_files(folder: Path) -> list[str]:
    """The official file names not present (raw or gzipped) in ``folder``."""
    return [stem for stem in FILES.values() if _file(folder, stem) is None]


def detect_mnist(data_dir: Path) -> str | None:
    """``mnist`` or ``fashion-mnist`` when torchvision's folder of one is under ``data_dir``."""
    for name, variant in VARIANTS.items():
        if not missing_mnist_files(data_dir / variant.torchvision_folder / "raw"):
            return name
    return None


def download_mnist(data_dir: Path, variant: str) -> Path:
    """Download the official files with torchvision (needs internet)."""
    from torchvision import datasets

    cls = datasets.MNIST if variant == "mnist" else datasets.FashionMNIST
    try:
        for train in (True, False):
            cls(root=str(data_dir), train=train, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise DataError(
            f"could not download {VARIANTS[variant].title} into {data_dir} ({exc}); without "
            f"internet, put the four official files ({', '.join(FILES.values())}, raw or .gz) "
            f"in {data_dir}") from None
    return data_dir / VARIANTS[variant].torchvision_folder / "raw"


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """An IDX file's uint8 array ``(N, *item_shape)``; checks magic number and length."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; re-download the file") from None
    header = 4 * (1 + 1 + len(item_shape))
    if len(data) < header:
        raise DataError(f"{path} is truncated ({len(data)} bytes); re-download it")
    dims = np.frombuffer(data[:header], dtype=">u4")
    if int(dims[0]) != magic or tuple(int(d) for d in dims[2:]) != item_shape:
        raise DataError(f"{path} is not an IDX file of {item_shape} items (header "
                        f"{[int(d) for d in dims]}); check the file names")
    n = int(dims[1])
    size = n * int(np.prod(item_shape, dtype=np.int64))
    if len(data) != header + size:
        raise DataError(f"{path} holds {len(data) - header} data bytes, its header says "
                        f"{size}; re-download it")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(n, *item_shape)


class MnistDataset(ImageDataset):
    """The 60,000 training then 10,000 test images of MNIST or Fashion-MNIST."""

    def __init__(self, folder: Path, variant: str) -> None:
        if variant not in VARIANTS:
            raise DataError(f"unknown MNIST variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.folder = Path(folder)
        self.variant = VARIANTS[variant]
        self.name = self.variant.title
        self.classes = list(self.variant.classes)
        missing = missing_mnist_files(self.folder)
        if missing:
            raise DataError(f"{self.folder} lacks {', '.join(missing)} (raw or .gz)")
        found = {key: path for key, stem in FILES.items()
                 if (path := _file(self.folder, stem)) is not None}
        self._files = [path.name for path in found.values()]
        parts = []
        for part in ("train", "test"):
            images = read_idx(found[f"{part}_images"], IMAGES_MAGIC, (28, 28))
            labels = read_idx(found[f"{part}_labels"], LABELS_MAGIC, ())
            if len(images) != len(labels):
                raise DataError(f"{self.folder}: {len(images)} {part} images but "
                                f"{len(labels)} labels")
            if len(labels) and labels.max() >= len(self.classes):
                raise DataError(f"{self.folder}: {part} label {labels.max()} is not a class")
            parts.append((images, labels.astype(np.int64)))
        self.images = np.concatenate([p[0] for p in parts])
        self.labels = LabelSet.from_ids(np.concatenate([p[1] for p in parts]),
                                        len(self.classes))
        self._n_train = len(parts[0][1])
        self.is_test = np.arange(len(self.labels)) >= self._n_train
        self.check()

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")  # (28, 28) uint8: mode L

    def describe(self, index: int) -> str:
        part, offset = ("train", index) if index < self._n_train else (
            "test", index - self._n_train)
        return f"{self.variant.name}:{part}[{offset}]"

    def data_files(self) -> tuple[Path, list[str]]:
        return self.folder, self._files
