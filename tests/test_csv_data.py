"""CSV files of ``path,label,split`` (open-metric-learning's layout), and the same images
read as a split image folder, as list files and as a CSV giving equal data sets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from test_list_files import _images, one_hot_lines, write_lists

from deephash.data import open_dataset
from deephash.data.listed import ListedDataset
from deephash.errors import DataError


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_same_images_as_image_folder_list_files_and_csv(tmp_path: Path) -> None:
    """One single-label data set in three layouts: equal labels, classes, test parts, pool
    order and pixels (the byte-identical-metrics test builds on this)."""
    root = make_image_folder(tmp_path / "data", n_classes=3, n_train=5, n_test=2)
    train, test = one_hot_lines(root)
    classes = ["class0", "class1", "class2"]
    write_lists(tmp_path / "lists", train, test, train, classes=classes)
    rows = [f"{path},{classes[vector.index(1)]},{part}"
            for part, lines in (("train", train), ("test", test)) for path, vector in lines]
    write_csv(root / "data.csv", "path,label,split\n" + "\n".join(rows) + "\n")
    folder = open_dataset(str(root))
    lists = open_dataset(str(tmp_path / "lists"), image_root=str(root))
    table = open_dataset(str(root / "data.csv"))
    for other in (lists, table):
        assert other.labels == folder.labels and other.labels.is_single
        assert other.classes == folder.classes
        assert np.array_equal(other.is_test, folder.is_test)
        assert other.fingerprint() == folder.fingerprint()
        for i in range(len(folder)):
            assert np.array_equal(other.load_pixels(i), folder.load_pixels(i))
    assert lists.parts is not None and table.parts is not None
    for name in ("train", "query", "database"):
        assert np.array_equal(lists.parts[name], table.parts[name])


def test_multi_label_names_splits_and_the_default_database(tmp_path: Path) -> None:
    _images(tmp_path / "d" / "img", 5)
    csv = write_csv(tmp_path / "d" / "x.csv",
                    "split,path,label,extra\n"
                    "train,img/0.png,10|2,a\n"
                    "\n"
                    "train,img/1.png,2,b\n"
                    'test,"img/2.png"," 10 | 9 ",c\n'
                    "TEST,img/3.png,9,d\n")
    data = open_dataset(str(csv))
    assert isinstance(data, ListedDataset)
    assert data.classes == ["2", "9", "10"]  # integer names sort as numbers
    assert data.labels.lists() == [[0, 2], [0], [1, 2], [1]]
    assert data.parts is not None
    assert {k: v.tolist() for k, v in data.parts.items()} == {
        "train": [0, 1], "query": [2, 3], "database": [0, 1]}  # no database rows: train
    assert data.is_test.tolist() == [False, False, True, True]


def test_database_rows_and_one_image_in_two_splits(tmp_path: Path) -> None:
    _images(tmp_path / "d", 4)
    csv = write_csv(tmp_path / "d" / "x.csv",
                    "path,label,split\n0.png,a,train\n0.png,a,database\n1.png,b,database\n"
                    "2.png,a|b,test\n")
    data = open_dataset(str(csv), "csv")
    assert data.parts is not None
    assert {k: v.tolist() for k, v in data.parts.items()} == {
        "train": [0], "database": [0, 1], "query": [2]}


def test_open_metric_learning_validation_rows(tmp_path: Path) -> None:
    _images(tmp_path / "d", 4)
    csv = write_csv(tmp_path / "d" / "oml.csv",
                    "label,path,split,is_query,is_gallery\n"
                    "0,0.png,train,,\n1,1.png,train,,\n"
                    "0,2.png,validation,True,True\n1,3.png,validation,False,True\n")
    data = open_dataset(str(csv))
    assert data.parts is not None
    assert {k: v.tolist() for k, v in data.parts.items()} == {
        "train": [0, 1], "query": [2], "database": [2, 3]}
    plain = write_csv(tmp_path / "d" / "plain.csv",
                      "label,path,split\n0,0.png,train\n1,1.png,train\n0,2.png,validation\n")
    opened = open_dataset(str(plain))
    assert opened.parts is not None and opened.parts["query"].tolist() == [2]


def test_without_split_or_label_columns(tmp_path: Path) -> None:
    _images(tmp_path / "d", 3)
    data = open_dataset(str(write_csv(tmp_path / "d" / "a.csv",
                                      "path,label\n0.png,x\n1.png,\n2.png,y\n")))
    assert data.parts is None and not data.is_test.any()
    assert data.labels.ids.tolist() == [0, -1, 1]  # an empty label: unlabelled
    bare = open_dataset(str(write_csv(tmp_path / "d" / "b.csv", "path\n0.png\n1.png\n")))
    assert bare.classes == [] and not bare.labels.labelled.any() and len(bare) == 2


def test_paths_relative_to_the_image_root(tmp_path: Path) -> None:
    _images(tmp_path / "photos" / "set", 2)
    csv = write_csv(tmp_path / "meta" / "x.csv", "path,label\nset/0.png,a\nset/1.png,b\n")
    with pytest.raises(DataError, match=r"x\.csv line 2: no image set/0\.png under"):
        open_dataset(str(csv))
    assert len(open_dataset(str(csv), image_root=str(tmp_path / "photos"))) == 2


@pytest.mark.parametrize("text, message", [
    ("name,label\n0.png,a\n", r"x\.csv line 1: no 'path' column \(the header names 'name', "
                              r"'label'\)"),
    ("", r"x\.csv is empty"),
    ("path,label\n0.png,a\n1.png,b,extra\n", r"x\.csv line 3: 3 fields, the header has 2"),
    ("path,label,split\n0.png,a,train\n1.png\n", r"x\.csv line 3: 1 fields, the header has 3"),
    ("path,label,split\n0.png,a,train\n1.png,,test\n",
     r"x\.csv line 3: 1\.png has no label; every image of the query split needs"),
    ("path,label,split\n0.png,a,dev\n", r"x\.csv line 2: split 'dev' is not train, test"),
    ("path,label,split\n0.png,a,\n", r"x\.csv line 2: split '' is not"),
    ("path,label\n0.png,a||b\n", r"x\.csv line 2: an empty label in 'a\|\|b'"),
    ("path,label\n0.png,a\n../0.png,b\n", r"x\.csv line 3: image path '\.\./0\.png' leaves"),
    ("path,label\n0.png,a\nnone.png,b\n", r"x\.csv line 3: no image none\.png under"),
    ("path,label\n0.png,a\n1.png,b\n\n0.png,b\n",
     r"x\.csv line 5: 0\.png has other labels than on .*x\.csv line 2"),
    ("path,path\n0.png,0.png\n", r"x\.csv line 1: column 'path' is named twice"),
    ('path,label\n"0.png,a\n', r"x\.csv line \d: unexpected end of data"),
    ("path,label,split,is_query\n0.png,a,train,\n1.png,b,validation,maybe\n",
     r"x\.csv line 3: is_query 'maybe' is not true or false"),
    ("path,label,split,is_query,is_gallery\n0.png,a,train,,\n1.png,b,validation,0,0\n",
     r"x\.csv line 3: a validation image that is neither a query nor in the gallery"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    _images(tmp_path / "d", 2)
    csv = write_csv(tmp_path / "d" / "x.csv", text)
    with pytest.raises(DataError) as caught:
        open_dataset(str(csv))
    error = str(caught.value)
    assert len(error.splitlines()) == 1 and re.search(message, error), error
