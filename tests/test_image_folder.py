from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deephash.data import fingerprint, open_dataset
from deephash.data.image_folder import ImageFolderDataset
from deephash.errors import DataError


def test_layout_labels_and_order(image_folder: Path) -> None:
    data = open_dataset(str(image_folder))
    assert isinstance(data, ImageFolderDataset)
    assert data.classes == ["class0", "class1", "class2"]
    assert len(data) == 3 * 8 + 3 * 3
    assert not data.is_test[:24].any() and data.is_test[24:].all()
    assert data.labels.ids.tolist() == [0] * 8 + [1] * 8 + [2] * 8 + [0] * 3 + [1] * 3 + [2] * 3
    assert data.describe(0).endswith("train/class0/00.png")


def test_grayscale_and_odd_sizes_become_rgb(image_folder: Path) -> None:
    data = open_dataset(str(image_folder))
    sizes = set()
    for i in range(6):
        image = data.load_image(i)
        assert image.mode == "RGB"
        sizes.add(image.size)
    assert len(sizes) == 2  # odd-sized files are kept as they are until the transform


def test_sixteen_bit_grayscale_is_scaled(tmp_path: Path) -> None:
    from deephash.data.decode import to_rgb

    image = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.asarray(to_rgb(image)).min() == 255


def test_corrupt_image_is_named(image_folder: Path) -> None:
    bad = image_folder / "train" / "class1" / "03.png"
    bad.write_bytes(b"not a png at all")
    data = open_dataset(str(image_folder))
    index = [data.describe(i) for i in range(len(data))].index(str(bad))
    with pytest.raises(DataError, match=r"cannot read image .*class1/03\.png"):
        data.load_image(index)


def test_one_class_is_refused(tmp_path: Path) -> None:
    for part in ("train", "test"):
        (tmp_path / part / "only").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / part / "only" / "a.png")
    with pytest.raises(DataError, match=r"1 class.*at least 2"):
        open_dataset(str(tmp_path))


def test_missing_folders_and_unknown_test_class(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="holds no data set deephash recognises"):
        open_dataset(str(tmp_path))
    shutil.copytree(image_folder / "test" / "class0", image_folder / "test" / "stranger")
    with pytest.raises(DataError, match="stranger"):
        open_dataset(str(image_folder))


def test_empty_class_folder_is_refused(image_folder: Path) -> None:
    (image_folder / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        open_dataset(str(image_folder))


def test_data_dir_from_environment(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPHASH_DATA", str(image_folder))
    assert len(open_dataset(None)) == 33
    monkeypatch.delenv("DEEPHASH_DATA")
    with pytest.raises(DataError, match="--data-dir"):
        open_dataset(None)


def test_fingerprint_follows_content_not_timestamps(image_folder: Path, tmp_path: Path) -> None:
    first = open_dataset(str(image_folder)).fingerprint()
    assert open_dataset(str(image_folder)).fingerprint() == first
    target = image_folder / "test" / "class2" / "00.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert open_dataset(str(image_folder)).fingerprint() == first  # touched, same bytes
    copy = shutil.copytree(image_folder, tmp_path / "copy")
    assert open_dataset(str(copy)).fingerprint() == first  # a copy keeps cached features
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    assert open_dataset(str(image_folder)).fingerprint() != first  # same size, new bytes
    assert open_dataset(str(copy)).fingerprint() == first


def test_content_digest_is_remembered_by_file_stats(image_folder: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    names = open_dataset(str(image_folder)).paths
    memo = tmp_path / "memo"
    digest = fingerprint.content_fingerprint(image_folder, names, memo)
    assert digest == fingerprint.content_digest(image_folder, names)
    assert len(list(memo.iterdir())) == 1

    def unreadable(*args: object) -> str:
        raise AssertionError("the memo should have answered")

    monkeypatch.setattr(fingerprint, "content_digest", unreadable)
    assert fingerprint.content_fingerprint(image_folder, names, memo) == digest
    (image_folder / names[0]).write_bytes(b"changed")
    with pytest.raises(AssertionError, match="memo"):
        fingerprint.content_fingerprint(image_folder, names, memo)


