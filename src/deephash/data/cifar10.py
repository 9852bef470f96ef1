"""CIFAR-10 in the official python format (``cifar-10-batches-py``), as torchvision downloads it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.errors import DataError
from deephash.labels import LabelSet

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"


def find_cifar10(data_dir: Path) -> Path | None:
    """The ``cifar-10-batches-py`` folder at or directly under ``data_dir``, if any."""
    for candidate in (data_dir, data_dir / FOLDER):
        if (candidate / META).is_file() and (candidate / TEST_BATCHES[0]).is_file():
            return candidate
    return None


def download_cifar10(data_dir: Path) -> Path:
    """Download and extract the official release with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(root=str(data_dir), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise DataError(
            f"could not download CIFAR-10 into {data_dir} ({exc}); without internet, extract "
            f"cifar-10-python.tar.gz there by hand, or pass --data-dir pointing to an image "
            f"folder with train/ and test/"
        ) from None
    return data_dir / FOLDER


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, ValueError) as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {exc!r}; "
                        "re-download the data set") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch {path} has data of shape {data.shape}; "
                        "expected (N, 3072) with N labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class Cifar10Dataset(ImageDataset):
    """The 50,000 training then 10,000 test images of the official release, in file order."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = "CIFAR-10"
        missing = [b for b in (*TRAIN_BATCHES, *TEST_BATCHES, META)
                   if not (self.folder / b).is_file()]
        if missing:
            raise DataError(f"{self.folder} lacks {', '.join(missing)}; re-download CIFAR-10")
        with open(self.folder / META, "rb") as handle:
            meta = pickle.load(handle, encoding="bytes")
        self.classes = [c.decode() for c in meta[b"label_names"]]
        parts = [_read_batch(self.folder / b) for b in (*TRAIN_BATCHES, *TEST_BATCHES)]
        self.images = np.concatenate([p[0] for p in parts])
        self.labels = LabelSet.from_ids(np.concatenate([p[1] for p in parts]),
                                        len(self.classes))
        n_test = sum(len(p[1]) for p in parts[len(TRAIN_BATCHES):])
        self.is_test = np.zeros(len(self.labels), dtype=bool)
        self.is_test[len(self.labels) - n_test:] = True
        self._n_train = len(self.labels) - n_test
        self.check()

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def load_pixels(self, index: int) -> np.ndarray:
        return np.array(self.images[index])

    def describe(self, index: int) -> str:
        if index < self._n_train:
            return f"cifar10:train[{index}]"
        return f"cifar10:test[{index - self._n_train}]"

    def data_files(self) -> tuple[Path, list[str]]:
        return self.folder, [*TRAIN_BATCHES, *TEST_BATCHES, META]
