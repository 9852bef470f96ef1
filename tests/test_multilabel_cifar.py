"""benchmarks/make_multilabel_cifar.py on a tiny generated CIFAR-like tree: labels are the
union of the tiles' classes, the pixels are the tiles (repeated in the cells left over),
the build is a function of the seed, and queries and database share no image."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from deephash.errors import DataError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def maker(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("make_multilabel_cifar")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Four classes of 20 training and 8 test images; some grey, some not 32 px."""
    return make_image_folder(tmp_path / "cifar", n_classes=4, n_train=20, n_test=8,
                             size=(32, 32))


def build(maker: ModuleType, tree: Path, out: Path, seed: int = 0) -> Path:
    return maker.make_multilabel(tree, out, seed, n_database=12, n_queries=5, n_train=7)


def read_list(path: Path) -> dict[str, list[int]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return {row[0]: [int(v) for v in row[1:]] for row in rows}


def pooled(pixels: np.ndarray) -> np.ndarray:
    """``(32, 32, 3)`` -> ``(8, 8, 3)`` means of 4x4 blocks."""
    return pixels.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))


def test_labels_are_the_union_of_the_tiles_and_the_pixels_the_tiles(
        maker: ModuleType, tree: Path, tmp_path: Path) -> None:
    out = build(maker, tree, tmp_path / "out")
    classes = (out / "classes.txt").read_text().split()
    assert classes == ["class0", "class1", "class2", "class3"]
    record = json.loads((out / "mosaics.json").read_text())
    database, queries = read_list(out / "database.txt"), read_list(out / "test.txt")
    train = read_list(out / "train.txt")
    assert (len(database), len(queries), len(train)) == (12, 5, 7)
    assert train.items() <= database.items()  # training lines are database lines
    assert list(train) == sorted(train)
    for path, row in {**database, **queries}.items():
        mosaic = record["mosaics"][path]
        assert 2 <= len(mosaic["sources"]) <= 4
        tile_classes = {Path(source).parent.name for source in mosaic["sources"]}
        assert row == [int(name in tile_classes) for name in classes]
        # each image fills a cell, those of a 2- or 3-image mosaic one more at most
        assert sorted(set(mosaic["grid"])) == sorted(mosaic["sources"])
        assert max(mosaic["grid"].count(s) for s in mosaic["sources"]) == (
            2 if len(mosaic["sources"]) < 4 else 1)
        pixels = np.asarray(Image.open(out / path), dtype=np.float64)
        assert pixels.shape == (64, 64, 3)
        for cell, tile in enumerate(mosaic["grid"]):
            block = pixels[(cell // 2) * 32:(cell // 2 + 1) * 32,
                           (cell % 2) * 32:(cell % 2 + 1) * 32]
            expected = np.asarray(Image.open(tree / tile).convert("RGB")
                                  .resize((32, 32), Image.Resampling.BILINEAR), np.float64)
            # JPEG-close to its tile (the test images are noise around a class colour, which
            # JPEG smooths: compare 4x4-pixel means)
            assert np.abs(pooled(block) - pooled(expected)).mean() < 8


def test_queries_and_database_share_no_image(maker: ModuleType, tree: Path,
                                             tmp_path: Path) -> None:
    record = json.loads((build(maker, tree, tmp_path / "out") / "mosaics.json").read_text())
    used = {path: m["sources"] for path, m in record["mosaics"].items()}
    every = [source for sources in used.values() for source in sources]
    assert len(every) == len(set(every))  # no image in two mosaics
    for path, sources in used.items():
        part = "test" if path.startswith("images/query/") else "train"
        assert all(source.startswith(f"{part}/") for source in sources)


def test_a_seed_gives_the_same_files_and_another_seed_others(maker: ModuleType, tree: Path,
                                                             tmp_path: Path) -> None:
    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file()}

    first = files(build(maker, tree, tmp_path / "a"))
    assert files(build(maker, tree, tmp_path / "b")) == first
    other = files(build(maker, tree, tmp_path / "c", seed=1))
    assert other.keys() == first.keys() and other["database.txt"] != first["database.txt"]


def test_bad_requests_are_refused_before_anything_is_written(
        maker: ModuleType, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"need .* distinct images"):
        maker.make_multilabel(tree, out, 0, n_database=40, n_queries=5, n_train=7)
    with pytest.raises(DataError, match="train <= database"):
        maker.make_multilabel(tree, out, 0, n_database=5, n_queries=5, n_train=7)
    assert list(tmp_path.iterdir()) == [tree]  # no OUT, no staging folder left
    (out / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="not an empty folder"):
        build(maker, tree, out)
    assert maker.main([str(tree), str(out)]) == 2
