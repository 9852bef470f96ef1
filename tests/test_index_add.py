"""``deephash index --add DIR --out INDEX``: DIR's images appended as one segment (nothing
of the index rewritten), embedded as the index's own images were, labelled by class name;
bad arguments refused up front in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_service_api import build_tree

from deephash.cli import main
from deephash.service.state import load_state


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("tree")).parent


@pytest.fixture
def tree(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "tree"))


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_index_add_appends_a_folder_as_one_segment(tree: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    index, data = tree / "index", tree / "data"
    before = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    new = tree / "new"
    (new / "class1").mkdir(parents=True)
    (new / "lemon").mkdir()
    shutil.copy(data / "test" / "class1" / "01.png", new / "class1" / "a.png")
    shutil.copy(data / "test" / "class0" / "02.png", new / "lemon" / "b.png")
    assert main(["index", "--add", str(new), "--out", str(index), "--cache-dir",
                 str(tree / "c")]) == 0
    assert all(p.read_bytes() == data for p, data in before.items() if p.name != ".lock")
    state = load_state(index)
    assert state.size == 50 and state.segments == 1 and state.generation == 0
    assert state.items.describe(48) == {"id": 48, "label": 1, "class": "class1",
                                        "labels": ["class1"], "path": "added/48.png"}
    assert state.items.describe(49)["labels"] == ["lemon"] and state.items.classes[3] == "lemon"
    assert (index / "added" / "49.png").read_bytes() == (new / "lemon" / "b.png").read_bytes()
    paths = state.items.paths.tolist()
    for added, original in ((48, "test/class1/01.png"), (49, "test/class0/02.png")):
        # the same image embedded as the index embedded it: the same code and outputs
        row = paths.index(original)
        assert np.array_equal(state.vectors[added], state.vectors[row])
        assert state.outputs is not None
        assert np.allclose(state.outputs[added], state.outputs[row], atol=1e-2)
    capsys.readouterr()
    assert main(["search", str(new / "lemon" / "b.png"), "--index", str(index), "-k", "3"]) == 0
    assert str((index / "added" / "49.png").resolve()) in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--add", "missing"], "--add missing is not a folder; pass a folder of images"),
    (["--add", "new", "--out", "elsewhere"], "--out elsewhere holds no index to add to"),
    (["--add", "new", "--overwrite"], "--add DIR adds DIR's images to the index in --out; drop"),
])
def test_index_add_refuses_bad_arguments_up_front(tree: Path, args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    (tree / "new").mkdir()
    capsys.readouterr()
    out = [] if "--out" in args else ["--out", "index"]
    assert main(["index", *args, *out]) == 2
    assert message in one_error(capsys)
    assert load_state(tree / "index").size == 48 and not (tree / "index" / "added").exists()
