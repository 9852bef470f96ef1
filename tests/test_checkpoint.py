"""Checkpoints are plain data, read with ``weights_only=True``: a crafted pickle runs nothing,
a bad file is a one-line error, and everything training writes reads back."""

from __future__ import annotations

import builtins
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_run_args
from PIL import Image

from deephash.cli import main
from deephash.errors import ConfigError
from deephash.studies import train as train_study
from deephash.training.checkpoint import load_model, read_checkpoint, save_checkpoint, to_plain
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.model import build_model


class Payload:
    """Unpickling this object writes ``marker``: the attack a safe load must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def crafted(path: Path, marker: Path) -> Path:
    """A file shaped like a deephash checkpoint whose pickle runs code on load."""
    config = TrainConfig(training=TrainingConfig(hidden_dims=(8,), embedding_dim=4))
    model = build_model(config.training, 6, None)
    torch.save({"config": {"seed": 0}, "in_dim": 6, "model": model.state_dict(),
                "epoch": Payload(marker)}, path)
    return path


def test_the_crafted_checkpoint_is_live(tmp_path: Path) -> None:
    """The attack works against an unsafe load, so the tests below can fail."""
    marker = tmp_path / "ran"
    torch.load(crafted(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"


def _index_folder(folder: Path, checkpoint: Path) -> Path:
    """A minimal index folder whose ``index.json`` names ``checkpoint``."""
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"checkpoint": str(checkpoint),
                                                   "codes": False, "spec": {}}))
    np.savez(folder / "items.npz", paths=np.array(["a.png"]), labels=np.zeros(1, np.int64),
             classes=np.array(["a"]))
    return folder


def _through_cli(*argv: str) -> Callable[[Path], None]:
    def call(tmp: Path) -> None:
        args = [a.replace("TMP", str(tmp)) for a in argv]
        if args[0] == "search":
            _index_folder(tmp / "index", tmp / "evil.pt")
            Image.new("RGB", (8, 8)).save(tmp / "q.png")
        assert main(args) == 2

    return call


ENTRY_POINTS: dict[str, Callable[[Path], Any]] = {
    "read_checkpoint": lambda tmp: read_checkpoint(tmp / "evil.pt"),
    "load_model": lambda tmp: load_model(tmp / "evil.pt"),
    "index --checkpoint": _through_cli("index", "--checkpoint", "TMP/evil.pt", "--data-dir",
                                       "TMP", "--out", "TMP/out"),
    "search (index.json)": _through_cli("search", "TMP/q.png", "--index", "TMP/index"),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_crafted_checkpoint_runs_nothing(tmp_path: Path, entry: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    crafted(tmp_path / "evil.pt", marker)
    if entry.startswith(("index", "search")):
        ENTRY_POINTS[entry](tmp_path)
        message = capsys.readouterr().err.strip().splitlines()[-1]
    else:
        with pytest.raises(ConfigError) as caught:
            ENTRY_POINTS[entry](tmp_path)
        message = str(caught.value)
    assert not marker.exists()
    assert "\n" not in message and str(tmp_path / "evil.pt") in message
    assert "not a safe deephash checkpoint: its pickle imports exec" in message


def _write(kind: str, path: Path) -> Path:
    good = tmp_checkpoint(path.with_name("good.pt"))
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "not a deephash checkpoint":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "a bare tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"config": {}, "in_dim": 6, "model": {}}))
    return path


def tmp_checkpoint(path: Path, in_dim: int = 6) -> Path:
    config = TrainConfig(training=TrainingConfig(hidden_dims=(8,), embedding_dim=4))
    save_checkpoint(path, config, build_model(config.training, in_dim, None), epoch=0)
    return path


BAD = {"truncated": "torch cannot read it", "garbage": "torch cannot read it",
       "empty": "torch cannot read it", "folder": "is a folder",
       "missing": "does not exist", "not a deephash checkpoint": "lacks config, in_dim, model",
       "a bare tensor": "lacks config, in_dim, model", "plain pickle": "torch cannot read it"}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_is_a_one_line_error(tmp_path: Path, kind: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(kind, tmp_path / "bad.pt")
    for call in (read_checkpoint, load_model):
        with pytest.raises(ConfigError) as caught:
            call(path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and BAD[kind] in message
    assert main(["index", "--checkpoint", str(path), "--out", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deephash: error:") and str(path) in err[0]


def test_weights_that_do_not_fit_the_configuration(tmp_path: Path) -> None:
    path = tmp_checkpoint(tmp_path / "a.pt")
    payload = torch.load(path, weights_only=True)
    payload["in_dim"] = 7  # the head's first layer was built for 6
    torch.save(payload, path)
    with pytest.raises(ConfigError, match=r"a\.pt is not a usable deephash checkpoint.*size"):
        load_model(path)


@pytest.mark.parametrize("image_size, bound", [(100000, "at most 4096"), (-5, "at least 1")])
def test_a_checkpoints_own_config_is_range_checked(tmp_path: Path, image_size: int, bound: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted configuration inside a checkpoint is refused like the same option."""
    path = tmp_checkpoint(tmp_path / "a.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["backbone"]["image_size"] = image_size
    torch.save(payload, path)
    with pytest.raises(ConfigError, match=rf"^checkpoint .*a\.pt: --image-size "
                                          rf"\(backbone.image_size\) must be {bound}"):
        load_model(path)
    assert main(["index", "--checkpoint", str(path), "--out", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"must be {bound}" in err[0]
    assert not (tmp_path / "i").exists()


def test_older_checkpoints_with_numpy_scalars_still_load(tmp_path: Path) -> None:
    path = tmp_checkpoint(tmp_path / "a.pt")
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "val_map": np.float64(0.25), "epoch": np.int64(3)}, path)
    loaded = read_checkpoint(path)
    assert loaded["val_map"] == 0.25 and type(loaded["val_map"]) is float
    assert loaded["epoch"] == 3 and type(loaded["epoch"]) is int


def test_to_plain_converts_numpy_and_refuses_objects(tmp_path: Path) -> None:
    plain = to_plain({"a": [np.float32(0.5), (np.int64(2), np.arange(3))], np.int64(1): None})
    assert plain["a"][0] == 0.5 and plain["a"][1][0] == 2 and plain[1] is None
    assert type(plain["a"][0]) is float and type(plain["a"][1][0]) is int
    assert torch.equal(plain["a"][1][1], torch.arange(3)) and list(plain) == ["a", 1]
    with pytest.raises(TypeError, match=r"checkpoint\['history'\]\[1\] is a Payload"):
        to_plain({"history": [1, Payload(tmp_path / "x")]})
    with pytest.raises(TypeError, match="object array"):
        to_plain({"x": np.array([None])})
    config = TrainConfig(training=TrainingConfig(hidden_dims=(8,), embedding_dim=4))
    with pytest.raises(TypeError, match="checkpoint\\['hook'\\] is a function"):
        save_checkpoint(tmp_path / "c.pt", config, build_model(config.training, 6, None),
                        hook=lambda: None)
    assert not (tmp_path / "c.pt").exists()


def test_numpy_extras_are_saved_as_plain_data(tmp_path: Path) -> None:
    """What a caller passes (numpy metrics, arrays) reads back with a bare safe load."""
    config = TrainConfig(training=TrainingConfig(hidden_dims=(8,), embedding_dim=4))
    save_checkpoint(tmp_path / "a.pt", config, build_model(config.training, 6, None),
                    val_map=np.float64(0.5), history=[{"epoch": np.int64(0)}],
                    order=np.arange(4))
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    _assert_plain(payload)
    assert payload["val_map"] == 0.5 and payload["history"] == [{"epoch": 0}]
    assert torch.equal(payload["order"], torch.arange(4))


def _assert_plain(value: Any, where: str = "") -> None:
    """Every leaf is a Python scalar, a string or a tensor."""
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_plain(key, where)
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _assert_plain(item, f"{where}[{i}]")
    else:
        assert not isinstance(value, np.generic), where
        assert isinstance(value, (type(None), bool, int, float, str, torch.Tensor)), where


def test_a_real_run_reads_back_safely_and_resumes(folder: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``deephash train`` killed after its first epoch: best.pt and last.pt load with a
    bare ``weights_only=True`` and hold plain data; ``--resume`` continues from them."""
    run = tmp_path / "run"
    args = ["train", "--out", str(run), *tiny_run_args(folder, tmp_path / "c", epochs=2)]
    save = train_study.save_checkpoint

    def save_then_die(path: Path, *a: Any, **extra: Any) -> None:
        save(path, *a, **extra)
        if path.name == "last.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(train_study, "save_checkpoint", save_then_die)
    assert main(args) == 130
    for name in ("best.pt", "last.pt"):
        payload = torch.load(run / name, map_location="cpu", weights_only=True)
        _assert_plain(payload)
        assert payload["epoch"] == 0
    assert isinstance(payload["history"][0]["val_map"], float)
    monkeypatch.setattr(train_study, "save_checkpoint", save)
    last = (run / "last.pt").read_bytes()
    crafted(run / "last.pt", tmp_path / "ran")  # --resume reads last.pt safely too
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "last.pt is not a safe deephash checkpoint" in err[-1]
    assert not (tmp_path / "ran").exists()
    (run / "last.pt").write_bytes(last)
    assert main([*args, "--resume"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    _assert_plain(torch.load(run / "last.pt", map_location="cpu", weights_only=True))
