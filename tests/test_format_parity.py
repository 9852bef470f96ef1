"""Item 1 of the multi-label issue: single-label figures do not depend on how the labels
came in. One seeded ``baseline``, ``train`` and ``hash`` run on the same images read as a
split image folder (class ids), as the field's list files (one-hot vectors, read as a
multi-hot matrix) and as a CSV (label names) writes byte-identical ``metrics.json``.

(The figures are also unchanged from before label sets existed: the same three runs at
commit 0cd5cb7, before ``ImageDataset.labels`` became a ``LabelSet``, wrote the same bytes;
that comparison needs the old code and is recorded in the closing note of the session.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_image_folder
from test_list_files import one_hot_lines, write_lists

from deephash.cli import main

CLASSES = ["class0", "class1", "class2"]
TRAINING = ["--batch-classes", "3", "--batch-samples", "4", "--hidden-dims", "16",
            "--epochs", "2", "--no-flip-augment"]
#: command, its options, where its metrics.json lands under --out
RUNS = {"baseline": ([], "metrics.json"), "train": (TRAINING, "metrics.json"),
        "hash": ([*TRAINING, "--bits", "12"], "bits-12/metrics.json")}


@pytest.fixture(scope="module")
def three_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The ``--data-dir`` options of one single-label image set in three layouts, and the
    ``--cache-dir`` option of the feature cache they share (same content digest)."""
    tmp = tmp_path_factory.mktemp("layouts")
    root = make_image_folder(tmp / "folder", n_classes=3, n_train=12, n_test=4)
    train, test = one_hot_lines(root)
    write_lists(tmp / "lists", train, test, train, classes=CLASSES)
    rows = [f"{path},{CLASSES[vector.index(1)]},{part}"
            for part, lines in (("train", train), ("test", test)) for path, vector in lines]
    (root / "data.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    (tmp / "cache").mkdir()  # one feature cache: the three layouts share their features
    return {"cache": ["--cache-dir", str(tmp / "cache")],
            "image folder": ["--data-dir", str(root)],
            "list files": ["--data-dir", str(tmp / "lists"), "--image-root", str(root)],
            "csv": ["--data-dir", str(root / "data.csv")]}


@pytest.mark.parametrize("command", list(RUNS))
def test_metrics_are_byte_identical_whatever_the_label_format(
        three_layouts: dict[str, list[str]], tmp_path: Path, command: str) -> None:
    options, metrics_file = RUNS[command]
    written = {}
    cache = three_layouts["cache"]
    for layout, data in three_layouts.items():
        if layout == "cache":
            continue
        out = tmp_path / layout.replace(" ", "-")
        assert main([command, *data, "--protocol", "cifar10", "--seed", "3",
                     *cache, "--image-size", "32",
                     "--num-workers", "0", "--tsne-points", "0", *options,
                     "--out", str(out)]) == 0
        written[layout] = (out / metrics_file).read_bytes()
    assert b"map@all" in written["image folder"]
    assert written["list files"] == written["image folder"]
    assert written["csv"] == written["image folder"]
