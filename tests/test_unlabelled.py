"""An unlabelled folder (images at any depth, no labels): what it holds, and ``index`` ->
``search`` -> ``serve`` over it (retrieval works; nothing is marked relevant or wrong, no
labels are listed); the training commands refuse it."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import local_client, make_image_folder, tiny_run_args
from fastapi.testclient import TestClient
from PIL import Image

from deephash.cli import main
from deephash.data.unlabelled import UnlabelledFolderDataset, find_images, require_labels
from deephash.errors import DataError
from deephash.service.app import create_app
from deephash.service.config import ServeConfig
from deephash.service.searcher import Searcher
from deephash.studies.configs import IndexConfig
from deephash.studies.search import build_index

#: where the images of the labelled tiny folder go in the unlabelled one (nested, any depth)
LAYOUT = {"train/class0/00.png": "2024/beach/a.png", "train/class1/03.png": "2024/b.PNG",
          "test/class2/01.png": "2023/winter/deep/er/c.png", "train/class0/05.png": "d.png",
          "train/class2/02.png": "2024/beach/e.png", "test/class1/00.png": "2023/f.png"}


def unlabelled_folder(root: Path, source: Path) -> Path:
    """``LAYOUT``'s images copied from ``source`` (a labelled tiny folder) under ``root``,
    with things that are not images, hidden files and a hidden folder beside them."""
    for old, new in LAYOUT.items():
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / old, root / new)
    (root / "2024" / "notes.txt").write_text("not an image")
    (root / ".thumbnail.png").write_bytes((root / "d.png").read_bytes())
    (root / ".cache" / "x").mkdir(parents=True)
    (root / ".cache" / "x" / "g.png").write_bytes((root / "d.png").read_bytes())
    return root


def test_the_folder_holds_every_image_at_any_depth_sorted_and_unlabelled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = make_image_folder(tmp_path / "labelled", n_classes=3, n_train=6, n_test=2)
    root = unlabelled_folder(tmp_path / "photos", source)
    outside = tmp_path / "elsewhere.png"
    shutil.copy(source / "train/class0/01.png", outside)
    os.symlink(outside, root / "2024" / "link-out.png")  # a target outside: skipped
    os.symlink(root / "d.png", root / "2023" / "link-in.png")  # inside: taken
    os.symlink(root / "2024", root / "linked-folder")  # not entered
    with caplog.at_level(logging.WARNING):
        dataset = UnlabelledFolderDataset(root)
    assert dataset.paths == ["2023/f.png", "2023/link-in.png", "2023/winter/deep/er/c.png",
                             "2024/b.PNG", "2024/beach/a.png", "2024/beach/e.png", "d.png"]
    assert "skipping 1 linked file(s) whose target is outside" in caplog.text
    assert "2024/link-out.png" in caplog.text
    assert len(dataset) == 7 and dataset.classes == [] and dataset.parts is None
    assert dataset.labels.is_single and dataset.labels.n_classes == 0
    assert dataset.labels.ids.tolist() == [-1] * 7 and not dataset.labels.labelled.any()
    assert dataset.labels.lists() == [[]] * 7 and dataset.labels.multi_hot.shape == (7, 0)
    assert not dataset.is_test.any() and dataset.is_test.shape == (7,)
    assert np.array_equal(dataset.load_pixels(6), np.array(Image.open(root / "d.png")))
    assert dataset.describe(0) == str(root / "2023" / "f.png")
    assert dataset.data_files() == (root, dataset.paths)
    assert dataset.image_source(3) == root / "2024" / "b.PNG"
    assert find_images(root / "2023" / "winter") == (["deep/er/c.png"], [])
    dataset.check()  # sound data: they can be indexed
    with pytest.raises(DataError, match=r"photos \(unlabelled folder\) has no labels: train, "
                                        "baseline and hash need labelled images"):
        require_labels(dataset)


def test_a_folder_without_images_or_no_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "a.txt").write_text("x")
    (tmp_path / "empty" / ".hidden.png").write_bytes(b"")
    with pytest.raises(DataError, match="holds no images"):
        UnlabelledFolderDataset(tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        UnlabelledFolderDataset(tmp_path / "missing")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/`` (labelled, the model's training data), a 16-bit model ``run/``, the
    unlabelled ``photos/`` and its index ``index/``."""
    tree = tmp_path_factory.mktemp("unlabelled")
    data = make_image_folder(tree / "data", n_classes=3, n_train=12, n_test=4)
    assert main(["hash", "--out", str(tree / "run"), "--bits", "16",
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    photos = unlabelled_folder(tree / "photos", data)
    config = IndexConfig(checkpoint=str(tree / "run" / "bits-16" / "best.pt"),
                         data_dir=str(photos), out=str(tree / "index"), cache_dir=str(tree / "c"))
    info = build_index(config, UnlabelledFolderDataset(photos))
    assert info["n_items"] == len(LAYOUT) and info["data"] == "photos (unlabelled folder)"
    return tree


@pytest.fixture(scope="module")
def client(tree: Path) -> Iterator[TestClient]:
    index = tree / "index"
    with local_client(create_app(Searcher.open(index), ServeConfig(index=str(index)))) as client:
        yield client


def test_index_says_once_that_nothing_is_marked(tree: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    config = IndexConfig(checkpoint=str(tree / "run" / "bits-16" / "best.pt"),
                         data_dir=str(tree / "photos"), out=str(tmp_path / "index"),
                         cache_dir=str(tree / "c"))
    with caplog.at_level(logging.INFO, logger="deephash.studies.search"):
        build_index(config, UnlabelledFolderDataset(tree / "photos"))
    notes = [r.message for r in caplog.records if "has no labels" in r.message]
    assert notes == ["note: photos (unlabelled folder) has no labels; search ranks its images "
                     "by similarity alone, with no relevance marks and no metrics"]
    stored = np.load(tmp_path / "index" / "items.npz")
    assert stored["labels"].tolist() == [-1] * len(LAYOUT) and stored["classes"].size == 0
    assert sorted(stored["paths"].tolist()) == sorted(LAYOUT.values())


def test_search_prints_no_label_column(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = tree / "photos" / "2023" / "winter" / "deep" / "er" / "c.png"
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(tree / "index"), "-k", "6",
                 "--show", str(tree / "show.png")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert lines[0].split() == ["rank", "distance", "path"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 6 and all(len(row) == 3 for row in rows)
    paths = [Path(row[2]) for row in rows]
    assert {p.relative_to((tree / "photos").resolve()).as_posix() for p in paths} == \
        set(LAYOUT.values())
    itself = [row for row in rows if Path(row[2]) == query.resolve()]
    assert itself and float(itself[0][1]) == 0
    assert (tree / "show.png").stat().st_size > 1000


def test_serve_answers_without_labels_or_marks(client: TestClient, tree: Path) -> None:
    info = client.get("/info").json()
    assert info["classes"] == [] and info["labelled"] == 0 and info["multi_label"] is False
    assert info["size"] == len(LAYOUT)
    record = client.get("/items/1").json()
    assert record == {"id": 1, "label": None, "class": None, "labels": [],
                      "path": "2023/winter/deep/er/c.png"}
    answer = client.get("/items/1/search?k=6").json()
    assert {hit["path"] for hit in answer["results"]} == set(LAYOUT.values())
    assert all(hit["labels"] == [] and hit["shares_label"] is None for hit in answer["results"])
    query = (tree / "photos" / "2024" / "beach" / "a.png").read_bytes()
    hits = client.post("/search?k=3", files={"image": ("q.png", query)}).json()["results"]
    assert hits[0]["distance"] == 0 and "2024/beach/a.png" in [h["path"] for h in hits]
    thumbnail = client.get("/items/1/thumbnail")  # a nested file of the folder
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/png"


def test_images_added_to_an_unlabelled_index_may_stay_unlabelled(tree: Path,
                                                                 tmp_path: Path) -> None:
    index = Path(shutil.copytree(tree / "index", tmp_path / "index"))
    client = local_client(create_app(Searcher.open(index), ServeConfig(index=str(index))))
    image = (tree / "photos" / "d.png").read_bytes()
    added = client.post("/items", files=[("images", ("n.png", image, "image/png"))]).json()
    assert added["added"][0]["labels"] == [] and added["size"] == len(LAYOUT) + 1
    named = client.post("/items", data={"label": "holiday"},
                        files=[("images", ("m.png", image, "image/png"))]).json()["added"][0]
    assert named["labels"] == ["holiday"] and client.get("/info").json()["labelled"] == 1
    numbered = client.post("/items", data={"label": "0"},
                           files=[("images", ("o.png", image, "image/png"))]).json()
    assert numbered["added"][0]["labels"] == ["holiday"]  # class 0 is the new class now
    fresh = local_client(create_app(Searcher.open(index), ServeConfig(index=str(index))))
    assert fresh.get("/info").json()["classes"] == ["holiday"]


def test_a_class_number_needs_classes() -> None:
    from deephash.errors import ConfigError
    from deephash.labels import LabelSet
    from deephash.service.items import Items

    items = Items(np.array(["a.png"]), LabelSet.from_ids([-1], 0), (), np.zeros(1, bool))
    with pytest.raises(ConfigError, match="label 0: this index has no classes to number; "
                                          "give a class name"):
        items.labels_of(["0"])
    assert items.labels_of(["x", "y", "x"]) == ([0, 1], ("x", "y"))


@pytest.mark.parametrize("kind", [[], ["--format", "unlabelled"]], ids=["auto", "named"])
def test_deephash_index_opens_an_unlabelled_folder(tree: Path, tmp_path: Path,
                                                   kind: list[str]) -> None:
    """``auto`` picks an unlabelled folder when images lie in its top folder (d.png);
    ``--format unlabelled`` names it. Either indexes what the Python API indexed."""
    out = tmp_path / "index"
    assert main(["index", "--checkpoint", str(tree / "run" / "bits-16" / "best.pt"),
                 "--data-dir", str(tree / "photos"), "--out", str(out), "--cache-dir",
                 str(tree / "c"), *kind]) == 0
    ours, theirs = np.load(out / "items.npz"), np.load(tree / "index" / "items.npz")
    for name in ("paths", "labels", "classes", "local"):
        assert np.array_equal(ours[name], theirs[name])
    assert (out / "index.npz").read_bytes() == (tree / "index" / "index.npz").read_bytes()
