"""MNIST and Fashion-MNIST in the official IDX format, with files the test writes itself."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from conftest import tiny_run_args

from deephash.cli import main
from deephash.data import open_dataset
from deephash.data.mnist import FILES, MnistDataset
from deephash.errors import DataError


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool) -> None:
    header = np.array([magic, len(array), *array.shape[1:]], dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_release(folder: Path, n_train: int = 120, n_test: int = 30, compress: bool = True,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The four official files; returns all images (N, 28, 28) and labels, train first.

    Each class's images are bright in their own band of rows, so a network can tell them
    apart."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for part, n in (("train", n_train), ("t10k", n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 * label + 4: 2 * label + 8] = 250
        write_idx(folder / f"{part}-images-idx3-ubyte", x, 0x803, compress)
        write_idx(folder / f"{part}-labels-idx1-ubyte", y, 0x801, compress)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


@pytest.mark.parametrize(("kind", "compress"), [("mnist", True), ("fashion-mnist", False)])
def test_reads_official_files(tmp_path: Path, kind: str, compress: bool) -> None:
    images, labels = write_release(tmp_path / "files", compress=compress)
    data = open_dataset(str(tmp_path / "files"), dataset=kind, download=False)
    assert isinstance(data, MnistDataset) and len(data) == 150
    assert data.labels.ids.tolist() == labels.tolist()
    assert data.is_test.sum() == 30 and data.is_test[-30:].all() and not data.is_test[:120].any()
    image = data.load_image(121)
    assert image.mode == "RGB" and image.size == (28, 28)
    assert np.array_equal(np.asarray(image)[:, :, 0], images[121])
    assert np.array_equal(np.asarray(image)[:, :, 2], images[121])
    assert data.describe(121) == f"{kind}:test[1]" and data.describe(5) == f"{kind}:train[5]"
    expected = "Ankle boot" if kind == "fashion-mnist" else "9"
    assert len(data.classes) == 10 and data.classes[9] == expected


def test_torchvision_layout_is_found_automatically(tmp_path: Path) -> None:
    write_release(tmp_path / "FashionMNIST" / "raw")
    data = open_dataset(str(tmp_path))
    assert isinstance(data, MnistDataset) and data.name == "Fashion-MNIST"
    write_release(tmp_path / "MNIST" / "raw", seed=1)  # both present: --dataset decides
    assert open_dataset(str(tmp_path), dataset="mnist").name == "MNIST"
    first = open_dataset(str(tmp_path), dataset="mnist").fingerprint()
    labels = tmp_path / "MNIST" / "raw" / (FILES["test_labels"] + ".gz")
    write_idx(labels.with_suffix(""), np.zeros(30, dtype=np.uint8), 0x801, compress=True)
    assert open_dataset(str(tmp_path), dataset="mnist").fingerprint() != first


def test_bad_files_are_reported_by_name(tmp_path: Path) -> None:
    write_release(tmp_path, compress=False)
    labels = tmp_path / FILES["train_labels"]
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte holds 117"):
        open_dataset(str(tmp_path), dataset="mnist", download=False)
    write_idx(labels, np.zeros(119, dtype=np.uint8), 0x801, compress=False)
    with pytest.raises(DataError, match="120 train images but 119 labels"):
        open_dataset(str(tmp_path), dataset="mnist", download=False)
    write_idx(labels, np.zeros(120, dtype=np.uint8), 0x803, compress=False)  # wrong magic
    with pytest.raises(DataError, match="not an IDX file"):
        open_dataset(str(tmp_path), dataset="mnist", download=False)
    (tmp_path / FILES["test_images"]).unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        open_dataset(str(tmp_path), dataset="mnist", download=False)


def test_offline_download_says_what_to_do(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match="without internet, put the four official files"):
        open_dataset(str(tmp_path / "empty"), dataset="fashion-mnist")
    with pytest.raises(DataError, match="allow --download"):
        open_dataset(str(tmp_path / "empty"), dataset="mnist", download=False)


def test_training_on_mnist_files_end_to_end(tmp_path: Path) -> None:
    write_release(tmp_path / "files")
    run = tmp_path / "run"
    args = tiny_run_args(tmp_path / "files", tmp_path / "cache", epochs=2)
    assert main(["train", "--out", str(run), "--dataset", "mnist", "--embedding-dim", "8",
                 *args]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_query"] == 30 and metrics["n_database"] == 120
    splits = json.loads((run / "splits.json").read_text())
    assert splits["dataset"] == "MNIST"
