"""Class folders (torchvision's ``ImageFolder``: ``DIR/<class>/*``, no split) and how
``--format auto`` tells every kind of data apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from deephash.cli import build_config, build_parser
from deephash.data import open_dataset
from deephash.data.detect import detect_file, detect_folder
from deephash.data.image_folder import ClassFolderDataset, ImageFolderDataset
from deephash.data.packed import write_pack
from deephash.errors import DataError


def _class_folders(root: Path) -> Path:
    """``root/<class>/*``: the training part of a split image folder, moved up a level."""
    make_image_folder(root.parent / "split", n_classes=3, n_train=4, n_test=1)
    (root.parent / "split" / "train").rename(root)
    return root


def test_class_folders_labels_order_and_no_split(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "data")
    (root / "class1" / "deeper").mkdir()
    Image.new("RGB", (4, 4)).save(root / "class1" / "deeper" / "ignored.png")
    (root / "class1" / "notes.txt").write_text("not an image")
    data = open_dataset(str(root))
    assert isinstance(data, ClassFolderDataset)
    assert data.classes == ["class0", "class1", "class2"]
    assert data.labels.ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.paths[:2] == ["class0/00.png", "class0/01.png"]
    assert not data.is_test.any() and data.parts is None
    assert data.load_pixels(5).shape[2] == 3
    assert data.describe(0) == str(root / "class0" / "00.png")


def test_class_folders_read_the_training_part_of_an_image_folder(tmp_path: Path) -> None:
    split = make_image_folder(tmp_path / "split", n_classes=3, n_train=4, n_test=2)
    folders = open_dataset(str(split / "train"), "classfolders")
    whole = open_dataset(str(split))
    train = np.flatnonzero(~whole.is_test)
    assert folders.labels == whole.labels[train]
    for i, pool in enumerate(train):
        assert np.array_equal(folders.load_pixels(i), whole.load_pixels(int(pool)))


def test_class_folders_refuse_one_class_and_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(DataError, match=r"1 class.*at least 2"):
        open_dataset(str(tmp_path / "one"), "classfolders")
    root = _class_folders(tmp_path / "data")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty has no images"):
        open_dataset(str(root), "classfolders")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        open_dataset(str(tmp_path / "none"), "classfolders")


def test_an_image_folder_without_test_images_opens(tmp_path: Path) -> None:
    """The official test part is a protocol's need, not the data set's (check())."""
    root = make_image_folder(tmp_path / "data", n_classes=2, n_train=3, n_test=0)
    data = open_dataset(str(root))
    assert isinstance(data, ImageFolderDataset) and not data.is_test.any()


def test_detection_rules(tmp_path: Path) -> None:
    split = make_image_folder(tmp_path / "split", n_classes=2, n_train=2, n_test=1)
    assert detect_folder(split) == "imagefolder"
    assert detect_folder(split / "train") == "classfolders"
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.txt", "test.txt", "database.txt"):
        (lists / name).write_text("")
    assert detect_folder(lists) == "lists"
    (lists / "train").mkdir()  # the list files win over a train/ folder beside them
    assert detect_folder(lists) == "lists"
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (4, 4)).save(loose / "a.png")
    (loose / "sub").mkdir()
    assert detect_folder(loose) == "unlabelled"
    (tmp_path / "csv.CSV").write_text("path\n")
    assert detect_file(tmp_path / "csv.CSV") == "csv"
    write_pack(open_dataset(str(split)), tmp_path / "data.pack")
    assert detect_file(tmp_path / "data.pack") == "pack"
    nested = tmp_path / "nested"
    (nested / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(nested / "a" / "b" / "x.png")
    with pytest.raises(DataError, match=r"holds no data set deephash recognises.*"
                                        r"--format unlabelled"):
        detect_folder(nested)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"neither a deephash pack nor a \.csv file"):
        detect_file(tmp_path / "notes.txt")


def test_a_named_kind_that_the_path_is_not(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("path\n")
    with pytest.raises(DataError, match=r"is a csv file, not lists data.*--format csv"):
        open_dataset(str(tmp_path / "data.csv"), "lists")
    with pytest.raises(DataError, match="--format csv reads a CSV file"):
        open_dataset(str(tmp_path), "csv")
    split = make_image_folder(tmp_path / "split", n_classes=2, n_train=2, n_test=1)
    with pytest.raises(DataError, match="--image-root applies to list files and CSV files"):
        open_dataset(str(split), image_root=str(tmp_path))


@pytest.mark.parametrize("flag", ["--format", "--dataset"])
def test_format_flag_and_its_old_name(flag: str, tmp_path: Path) -> None:
    argv = ["baseline", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), flag,
            "classfolders", "--image-root", str(tmp_path)]
    config = build_config("baseline", build_parser().parse_args(argv))
    assert config.data.dataset == "classfolders" and config.data.image_root == str(tmp_path)
