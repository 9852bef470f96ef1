"""The official python-format release, with files the test writes itself."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

from deephash.data import open_dataset
from deephash.data.cifar10 import Cifar10Dataset
from deephash.errors import DataError

CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
           b"ship", b"truck"]


def write_release(root: Path, per_batch: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Six batches in the official format; returns all images (N, 32, 32, 3) and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = [int(x) for x in rng.permutation(np.arange(per_batch) % 10)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": batch_labels, b"batch_label": name.encode()},
                        handle)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(batch_labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": CLASSES, b"num_cases_per_batch": per_batch}, handle)
    return np.concatenate(images), np.asarray(labels)


def test_reads_official_files(tmp_path: Path) -> None:
    images, labels = write_release(tmp_path)
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = open_dataset(str(where))
        assert isinstance(data, Cifar10Dataset)
        assert data.classes[0] == "airplane" and len(data.classes) == 10
        assert data.labels.ids.tolist() == labels.tolist()
        assert data.is_test.sum() == 20 and data.is_test[-20:].all()
        assert np.array_equal(np.asarray(data.load_image(101)), images[101])
        assert data.describe(101) == "cifar10:test[1]"
    assert open_dataset(str(tmp_path), dataset="cifar10").fingerprint() == data.fingerprint()


def test_truncated_batch_is_reported(tmp_path: Path) -> None:
    write_release(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        open_dataset(str(tmp_path))


def test_offline_download_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"could not download CIFAR-10.*--data-dir"):
        open_dataset(str(tmp_path / "new"), dataset="cifar10")
    with pytest.raises(DataError, match="--download"):
        open_dataset(str(tmp_path / "new"), dataset="cifar10", download=False)
