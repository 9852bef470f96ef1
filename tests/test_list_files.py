"""List files (DeepHash-pytorch's ``train.txt``/``test.txt``/``database.txt`` of
``path 0 1 0 ...`` lines): pool, labels, parts, the image root, and every bad line named by
file and line number."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from deephash.data import open_dataset
from deephash.data.listed import ListedDataset
from deephash.errors import DataError
from deephash.labels import LabelSet

Line = tuple[str, Sequence[int]]


def write_lists(folder: Path, train: list[Line], test: list[Line], database: list[Line],
                classes: list[str] | None = None) -> Path:
    """``folder/{train,test,database}.txt`` (and ``classes.txt``) of ``(path, 0/1 vector)``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("test", test), ("database", database)):
        (folder / f"{name}.txt").write_text(
            "".join(f"{path} {' '.join(map(str, vector))}\n" for path, vector in lines))
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder


def one_hot_lines(root: Path) -> tuple[list[Line], list[Line]]:
    """The train and test images of the image folder ``root`` as list lines (one-hot
    vectors over its classes, paths relative to ``root``)."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    parts = []
    for part in ("train", "test"):
        lines = []
        for c, name in enumerate(classes):
            for image in sorted((root / part / name).iterdir()):
                lines.append((f"{part}/{name}/{image.name}",
                              [int(c == k) for k in range(len(classes))]))
        parts.append(lines)
    return parts[0], parts[1]


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    return [f"{i}.png" for i in range(n)]


def test_single_label_lists_read_as_their_image_folder(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", n_classes=3, n_train=4, n_test=2)
    train, test = one_hot_lines(root)
    write_lists(root, train, test, train, classes=["class0", "class1", "class2"])
    folder = open_dataset(str(root), "imagefolder")
    lists = open_dataset(str(root))  # auto: the list files win over train/ and test/
    assert isinstance(lists, ListedDataset)
    assert lists.labels == folder.labels and lists.labels.is_single
    assert lists.classes == folder.classes and lists.paths == folder.paths
    assert np.array_equal(lists.is_test, folder.is_test)
    for i in range(len(folder)):
        assert np.array_equal(lists.load_pixels(i), folder.load_pixels(i))
    assert lists.parts is not None
    assert lists.parts["train"].tolist() == lists.parts["database"].tolist() == list(range(12))
    assert lists.parts["query"].tolist() == list(range(12, 18))
    assert lists.fingerprint() == folder.fingerprint()  # the same images: shared features


def test_multi_label_pool_order_parts_and_class_names(tmp_path: Path) -> None:
    names = _images(tmp_path / "data" / "img", 6)
    p = [f"img/{n}" for n in names]
    write_lists(tmp_path / "data",
                train=[(p[1], [1, 1, 0]), (p[0], [0, 0, 1])],
                test=[(p[5], [0, 1, 1]), (p[4], [1, 0, 0])],
                database=[(p[0], [0, 0, 1]), (p[2], [0, 1, 0]), (p[3], [1, 0, 1]),
                          (p[2], [0, 1, 0])],  # a repeated line with the same labels
                classes=["sky", "tree", "person"])
    data = open_dataset(str(tmp_path / "data"), "lists")
    # first appearance: train.txt, then database.txt, then test.txt
    assert data.paths == [p[1], p[0], p[2], p[3], p[5], p[4]]
    assert data.classes == ["sky", "tree", "person"]
    assert not data.labels.is_single
    assert data.labels.lists() == [[0, 1], [2], [1], [0, 2], [1, 2], [0]]
    assert data.parts is not None
    assert {k: v.tolist() for k, v in data.parts.items()} == {
        "train": [0, 1], "database": [1, 2, 3], "query": [4, 5]}
    assert data.is_test.tolist() == [False] * 4 + [True] * 2
    assert data.describe(0) == str(tmp_path / "data" / p[1])


def test_paths_relative_to_the_image_root(tmp_path: Path) -> None:
    """DeepHash-pytorch names paths from its repository root: --image-root."""
    names = _images(tmp_path / "repo" / "data" / "nus" / "images", 4)
    p = [f"data/nus/images/{n}" for n in names]
    lists = write_lists(tmp_path / "repo" / "data" / "nus",
                        [(p[0], [1, 0]), (p[1], [0, 1])], [(p[2], [1, 1])],
                        [(p[0], [1, 0]), (p[1], [0, 1]), (p[3], [1, 0])])
    with pytest.raises(DataError, match=r"train\.txt line 1: no image data/nus/images/0\.png "
                                        r"under .*--image-root"):
        open_dataset(str(lists))
    data = open_dataset(str(lists), image_root=str(tmp_path / "repo"))
    assert data.classes == ["0", "1"] and len(data) == 4
    assert np.array_equal(data.load_pixels(0),
                          np.array(Image.open(tmp_path / "repo" / p[0]).convert("RGB")))
    absolute = write_lists(tmp_path / "abs", [(str(tmp_path / "repo" / p[0]), [1, 0])],
                           [(p[1], [0, 1])], [(p[0], [1, 0])])
    inside = open_dataset(str(absolute), image_root=str(tmp_path / "repo"))
    assert inside.paths == [p[0], p[1]]  # an absolute path inside the root is the same image


def test_labels_are_read_as_one_array(tmp_path: Path) -> None:
    """Many lines with random vectors: the parsed matrix is the written one."""
    rng = np.random.default_rng(0)
    names = _images(tmp_path / "data", 300)
    hot = rng.random((300, 21)) < 0.2
    hot[:, 0] |= ~hot.any(axis=1)
    lines = [(n, row.astype(int).tolist()) for n, row in zip(names, hot, strict=True)]
    write_lists(tmp_path / "data", lines[:200], lines[250:], lines[:250])
    data = open_dataset(str(tmp_path / "data"))
    assert data.labels == LabelSet.from_multi_hot(hot)


def _bad(tmp_path: Path, train: list[Line], **files: str) -> str:
    """Open list files whose train.txt is ``train`` (and test/database a valid line, or
    ``files``' raw text); the error's message."""
    _images(tmp_path / "d", 3)
    folder = write_lists(tmp_path / "d", train, [("1.png", [0, 1])], [("2.png", [1, 0])])
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(DataError) as caught:
        open_dataset(str(folder), "lists")
    return str(caught.value)


@pytest.mark.parametrize("train, files, message", [
    ([("0.png", [1, 0]), ("2.png", [1, 0, 1])], {},
     r"train\.txt line 2: 3 label values, not 2 as on the first line of train\.txt"),
    ([("0.png", [1, 0])], {"database.txt": "2.png 1\n"},
     r"database\.txt line 1: 1 label values, not 2"),
    ([("0.png", [1, 0])], {"test.txt": "\n\n1.png\n"}, r"test\.txt line 3: 0 label values"),
    ([("0.png", [1, 2])], {}, r"train\.txt line 1: label value '2' is not 0 or 1"),
    ([("0.png", [1, 0])], {"test.txt": "1.png 1 0.5\n"},
     r"test\.txt line 1: label value '0\.5' is not 0 or 1"),
    ([("0.png", [0, 0])], {}, r"train\.txt line 1: 0\.png has no label; every image of the "
                              r"train split needs at least one"),
    ([("0.png", [1, 0]), ("missing.png", [1, 0])], {},
     r"train\.txt line 2: no image missing\.png under"),
    ([("../outside.png", [1, 0])], {}, r"train\.txt line 1: image path '\.\./outside\.png' "
                                       r"leaves"),
    ([("/etc/passwd", [1, 0])], {}, r"train\.txt line 1: image path '/etc/passwd' leaves"),
    ([("sub/../../0.png", [1, 0])], {}, r"train\.txt line 1: image path .* leaves"),
    ([("0.png", [1, 0])], {"database.txt": "2.png 1 0\n0.png 0 1\n"},
     r"database\.txt line 2: 0\.png has other labels than on .*train\.txt line 1"),
    ([("0.png", [1, 0])], {"classes.txt": "a\nb\nc\n"},
     r"classes\.txt names 3 classes, the list files have 2"),
    ([("0.png", [1, 0])], {"classes.txt": "a\na\n"}, r"classes\.txt line 2: a repeated"),
    ([("0.png", [1, 0])], {"test.txt": "\n"}, r"test\.txt lists no images"),
])
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, train: list[Line],
                                              files: dict[str, str], message: str) -> None:
    error = _bad(tmp_path, train, **files)
    assert len(error.splitlines()) == 1
    assert re.search(message, error), error


def test_missing_or_unreadable_list_file_is_named(tmp_path: Path) -> None:
    _images(tmp_path / "d", 2)
    folder = write_lists(tmp_path / "d", [("0.png", [1, 0])], [], [("0.png", [1, 0])])
    (folder / "test.txt").write_bytes(b"\xff\xfe 1 0\n")
    with pytest.raises(DataError, match=r"test\.txt: not UTF-8 text \(byte 0\)"):
        open_dataset(str(folder), "lists")
    os.remove(folder / "database.txt")
    with pytest.raises(DataError, match=r"has no database\.txt; list files are train\.txt"):
        open_dataset(str(folder), "lists")


def test_symlinked_images_inside_the_root_are_read(tmp_path: Path) -> None:
    names = _images(tmp_path / "elsewhere", 2)
    (tmp_path / "d").mkdir()
    for name in names:
        os.symlink(tmp_path / "elsewhere" / name, tmp_path / "d" / name)
    folder = write_lists(tmp_path / "d", [(names[0], [1, 0])], [(names[1], [0, 1])],
                         [(names[0], [1, 0])])
    assert len(open_dataset(str(folder))) == 2

