"""deephash index and search over a tiny image folder, with a hashing and a float model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, tiny_run_args
from PIL import Image

from deephash.cli import main
from deephash.training.checkpoint import save_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.model import build_model


@pytest.mark.parametrize(("kind", "flip"), [("hash", False), ("train", False), ("hash", True)])
def test_index_then_search(folder: Path, tmp_path: Path, kind: str, flip: bool,
                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    extra = ["--bits", "16"] if kind == "hash" else ["--embedding-dim", "8"]
    extra += ["--test-time-flip"] if flip else []
    args = tiny_run_args(folder, tmp_path / "c", epochs=1)
    assert main([kind, "--out", str(run), *args, *extra]) == 0
    checkpoint = run / "bits-16" / "best.pt" if kind == "hash" else run / "best.pt"
    index = tmp_path / "index"
    factory = "BFlat" if kind == "hash" else "Flat"
    choice = ["--index", factory] if flip else []  # default: the index that fits the model
    assert main(["index", "--checkpoint", str(checkpoint), "--data-dir", str(folder),
                 "--out", str(index), *choice, "--cache-dir", str(tmp_path / "c")]) == 0
    info = json.loads((index / "index.json").read_text())
    assert info["n_items"] == 48 and info["codes"] == (kind == "hash")
    assert info["index"] == factory
    capsys.readouterr()
    query = folder / "test" / "class1" / "02.png"
    assert main(["search", str(query), "--index", str(index), "-k", "5",
                 "--show", str(tmp_path / "show.png")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    lines = [line for line in printed if not line.startswith("#")]
    notes = [line for line in printed if line.startswith("#")]  # codes: the tie line, last
    assert printed[len(printed) - len(notes):] == notes and len(notes) == (kind == "hash")
    assert lines[0].split()[:3] == ["rank", "distance", "label"]
    assert len(lines) == 6
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"] and float(rows[0][1]) < 1e-6
    # the query itself at distance 0: first for embeddings; among the tied codes for hashing
    itself = [row for row in rows if row[3].endswith("test/class1/02.png")]
    assert itself and float(itself[0][1]) < 1e-6
    if kind == "train":
        assert rows[0] == itself[0]
    assert (tmp_path / "show.png").stat().st_size > 1000


def test_search_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--index", str(tmp_path)]) == 2
    assert "give a query image" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "x.png"), "--index", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["search", str(tmp_path / "x.png"), "--index", str(tmp_path)]) == 2
    assert "not an index folder" in capsys.readouterr().err
    assert main(["index", "--out", str(tmp_path / "i")]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree with ``data/``, a 12-bit hashing run ``run/`` and its feature cache ``c/``."""
    tree = tmp_path_factory.mktemp("tree")
    data = make_image_folder(tree / "data", n_classes=3, n_train=12, n_test=4)
    assert main(["hash", "--out", str(tree / "run"), "--bits", "12",
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    return tree


def _index(tree: Path, *extra: str) -> Path:
    assert main(["index", "--checkpoint", str(tree / "run" / "bits-12" / "best.pt"),
                 "--data-dir", str(tree / "data"), "--out", str(tree / "index"),
                 "--cache-dir", str(tree / "c"), *extra]) == 0
    return tree / "index"


def _search(index: Path, query: Path, capsys: pytest.CaptureFixture[str],
            *extra: str) -> list[list[str]]:
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(index), "-k", "48", *extra]) == 0
    return [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]
            if not line.startswith("#")]


def test_twelve_bit_codes_use_faiss_and_moved_trees_still_search(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """index.json holds paths relative to the index folder: the tree moved elsewhere
    searches as before, with the images found at their new place."""
    tree = Path(shutil.copytree(trained, tmp_path / "a"))
    index = _index(tree)
    info = json.loads((index / "index.json").read_text())
    assert info["index"] == "BFlat" and info["dim"] == 12  # faiss serves 12-bit codes
    assert info["checkpoint"] == "../run/bits-12/best.pt" and info["data_root"] == "../data"
    before = _search(index, tree / "data" / "test" / "class1" / "02.png", capsys)
    moved = Path(shutil.move(tree, tmp_path / "b"))
    assert not tree.exists()
    after = _search(moved / "index", moved / "data" / "test" / "class1" / "02.png", capsys)
    assert [row[:3] for row in after] == [row[:3] for row in before]
    assert len(after) == 48 and all(Path(row[3]).is_file() for row in after)
    assert all(row[3].startswith(str(moved.resolve() / "data")) for row in after)
    assert ["0", str(moved.resolve() / "data/test/class1/02.png")] in [
        [row[1], row[3]] for row in after]


def test_an_index_folder_moved_alone_and_a_moved_checkpoint(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = Path(shutil.copytree(trained, tmp_path / "a"))
    index = Path(shutil.move(_index(tree), tmp_path / "elsewhere"))
    query = tree / "data" / "test" / "class2" / "01.png"
    rows = _search(index, query, capsys)  # the absolute places recorded at indexing time
    assert ["0", str(tree.resolve() / "data/test/class2/01.png")] in [
        [row[1], row[3]] for row in rows]
    shutil.move(tree / "run", tmp_path / "run-moved")
    assert main(["search", str(query), "--index", str(index)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names checkpoint ../run/bits-12/best.pt, which is not at" in err[0]
    assert (f"{tmp_path.resolve()}/run/bits-12/best.pt or {tree.resolve()}/run/bits-12/best.pt"
            in err[0])
    assert "pass --checkpoint" in err[0]
    override = tmp_path / "run-moved" / "bits-12" / "best.pt"
    assert _search(index, query, capsys, "--checkpoint", str(override)) == rows
    config = TrainConfig(training=TrainingConfig(hidden_dims=(8,), embedding_dim=4))
    save_checkpoint(tmp_path / "float.pt", config, build_model(config.training, 6, None))
    assert main(["search", str(query), "--index", str(index), "--checkpoint",
                 str(tmp_path / "float.pt")]) == 2
    assert "gives 4-d embeddings, the index holds 12-bit codes" in capsys.readouterr().err


def test_index_folders_with_absolute_paths_still_search(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An index.json written before relative paths (and before checksums and generations):
    absolute checkpoint and item paths."""
    tree = Path(shutil.copytree(trained, tmp_path / "a"))
    index = _index(tree)
    info = json.loads((index / "index.json").read_text())
    for key in ("checksums", "index_file", "items_file", "generation"):
        del info[key]
    root = Path(info.pop("data_root_absolute"))
    info["checkpoint"] = info.pop("checkpoint_absolute")
    del info["data_root"]
    (index / "index.json").write_text(json.dumps(info))
    items = dict(np.load(index / "items.npz"))
    items["paths"] = np.array([str(root / p) for p in items["paths"]])
    np.savez(index / "items.npz", **items)
    rows = _search(index, tree / "data" / "test" / "class0" / "03.png", capsys)
    assert ["0", str(root / "test/class0/03.png")] in [[row[1], row[3]] for row in rows]


@pytest.mark.parametrize("cache_choice", ["--cache-dir", "--no-cache"], indirect=True)
def test_index_writes_no_cache_outside_the_chosen_one(
        trained: Path, tmp_path: Path, cache_choice: tuple[list[str], Path, list[Path]]) -> None:
    """With --cache-dir X the feature cache and the fingerprint memo go to X; with
    --no-cache nowhere: the default cache ($DEEPHASH_CACHE, ~/.cache) stays empty."""
    options, chosen, defaults = cache_choice
    checkpoint = str(trained / "run" / "bits-12" / "best.pt")
    assert main(["index", "--checkpoint", checkpoint, "--data-dir", str(trained / "data"),
                 "--out", str(tmp_path / "index"), *options]) == 0
    assert all(list(folder.iterdir()) == [] for folder in defaults)
    if "--cache-dir" in options:
        assert len(list((chosen / "fingerprints").iterdir())) == 1
        assert any(chosen.rglob("*.npy")) or any(chosen.rglob("*.npz"))
    else:
        assert not chosen.exists()


def test_search_json_has_what_the_table_shows(trained: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--json: one JSON object with the table's rows (rank, item, path, labels, distance,
    relevance) and the tie line's facts, nothing else on stdout."""
    tree = Path(shutil.copytree(trained, tmp_path / "a"))
    index = _index(tree)
    query = tree / "data" / "test" / "class1" / "02.png"
    table = _search(index, query, capsys, "-k", "5")
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(index), "-k", "5", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"] == str(query) and answer["k"] == 5
    hits = answer["hits"]
    assert [list(hit) for hit in hits] == [["rank", "item", "path", "labels", "distance",
                                            "relevant"]] * 5
    assert [[str(h["rank"]), f"{h['distance']:.3g}", ",".join(h["labels"]), h["path"]]
            for h in hits] == table
    items = np.load(index / "items.npz")
    for hit in hits:
        assert hit["path"].endswith(str(items["paths"][hit["item"]]))
        assert hit["relevant"] == (hit["labels"] == ["class1"])
    ties = answer["ties"]
    assert set(ties) == {"distance", "count", "shown", "order"}
    assert ties["distance"] == hits[-1]["distance"] and ties["shown"] <= ties["count"]
    assert ties["order"] == "continuous outputs"
