"""deephash index and search over a tiny image folder, with a hashing and a float model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_run_args

from deephash.cli import main


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
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "distance", "label"]
    assert len(lines) == 6
    first = lines[1].split()
    assert first[0] == "1" and float(first[1]) < 1e-6 and first[3].endswith("class1/02.png")
    assert (tmp_path / "show.png").stat().st_size > 1000


def test_search_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--index", str(tmp_path)]) == 2
    assert "give a query image" in capsys.readouterr().err
    assert main(["search", "x.png", "--index", str(tmp_path)]) == 2
    assert "not an index folder" in capsys.readouterr().err
    assert main(["index", "--out", str(tmp_path / "i")]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
