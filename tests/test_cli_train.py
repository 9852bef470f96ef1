"""``deephash train`` end to end on a tiny generated image folder, both modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import headline_line, last_line

from deephash.cli import main
from deephash.training.checkpoint import load_model

FLAT_KEYS = ("knn_acc@1", "knn_acc@10", "map@all", "map@1000", "p@10", "p@100")


def train(data: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["train", "--data-dir", str(data), "--out", str(out), "--cache-dir", str(cache),
                 "--image-size", "32", "--num-workers", "0", "--tsne-points", "30",
                 "--batch-classes", "3", "--batch-samples", "4", "--embedding-dim", "16",
                 "--hidden-dims", "32", *extra])


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_train_writes_the_run_folder(folder: Path, tmp_path: Path, mode: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert train(folder, run, tmp_path / "cache", "--mode", mode, "--epochs", "2",
                     "--miner", "batch-hard", "--margin", "0.3") == 0
    for name in ("config.yaml", "splits.json", "metrics.json", "tsne.png", "pr_curve.json",
                 "embeddings/query.npz", "embeddings/database.npz", "best.pt", "last.pt",
                 "history.json", "curves.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(0.0 <= metrics[k] <= 1.0 for k in FLAT_KEYS)
    assert metrics["best_epoch"] in (1, 2) and 0 <= metrics["val_map@all"] <= 1
    assert last_line(caplog) == headline_line(run, metrics)  # it ends with its test figures
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    config, model = load_model(run / "best.pt")
    assert config.training.mode == mode and (model.backbone is not None) == (mode == "finetune")
    query = np.load(run / "embeddings" / "query.npz")
    assert query["x"].shape == (12, 16)
    np.testing.assert_allclose(np.linalg.norm(query["x"], axis=1), 1.0, atol=1e-5)


def test_train_resume_continues_the_run(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(folder, run, tmp_path / "cache", "--epochs", "1", "--no-flip-augment") == 0
    assert train(folder, run, tmp_path / "cache", "--epochs", "3", "--no-flip-augment",
                 "--resume") == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_a_resumed_run_may_not_train_shorter(folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """config.yaml never says fewer epochs than the history holds: --resume --epochs 1
    after 2 is refused before anything is rewritten."""
    run = tmp_path / "run"
    assert train(folder, run, tmp_path / "cache", "--epochs", "2", "--no-flip-augment") == 0
    saved = {name: (run / name).read_bytes() for name in ("config.yaml", "run.json", "last.pt")}
    capsys.readouterr()
    assert train(folder, run, tmp_path / "cache", "--epochs", "1", "--no-flip-augment",
                 "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has trained 2 epochs; --epochs 1" in err[0]
    assert {name: (run / name).read_bytes() for name in saved} == saved


def test_a_non_finite_loss_stops_training_at_once(folder: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The first batch of epoch 2 yields a NaN loss: training stops with one line naming
    the epoch and the batch; the folder keeps epoch 1's checkpoints and says failed."""
    from deephash.training import trainer

    calls = {"n": 0}
    real = trainer.batch_loss
    batches = 3  # per epoch (--batches-per-epoch)

    def poisoned(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == batches + 1:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer, "batch_loss", poisoned)
    run = tmp_path / "run"
    assert train(folder, run, tmp_path / "cache", "--epochs", "2", "--no-flip-augment",
                 "--batches-per-epoch", str(batches)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err == [f"deephash: error: the training loss became nan in epoch 2, batch 1 of "
                   f"{batches}; stopped before the weights took that step (last.pt and best.pt "
                   "of the earlier epochs are kept): lower --lr, the margin or the regulariser "
                   "weights in a new run (--overwrite or another --out)"]
    info = json.loads((run / "run.json").read_text())
    assert info["state"] == "failed" and "loss became nan in epoch 2" in info["error"]
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 0 and (run / "best.pt").is_file()
    assert not (run / "metrics.json").exists()


def test_the_default_batch_classes_train_a_folder_of_fewer_classes(
        folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The default --batch-classes 10 on a 3-class folder: batches of all 3 classes."""
    with caplog.at_level("INFO"):
        assert train(folder, tmp_path / "r", tmp_path / "c", "--batch-classes", "10",
                     "--epochs", "1") == 0
    assert "every batch holds all 3" in caplog.text
    assert "batches of 3 x 4" in caplog.text


def test_train_errors_are_one_line(folder: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    # (bad option values are in test_bad_input.py; these depend on the data or the folder)
    assert train(folder, tmp_path / "r", tmp_path / "c", "--loss", "facenet",
                 "--miner", "offline", "--batch-classes", "2", "--batch-samples", "1") == 2
    assert "a batch needs at least one tuple" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before the run folder is written
    assert not list((tmp_path / "c").glob("features/*"))  # and before any extraction
    assert train(folder, tmp_path / "new", tmp_path / "c", "--resume") == 2
    assert "last.pt does not exist" in capsys.readouterr().err


def test_trained_figures_stand_beside_the_frozen_features(
        folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """metrics.json carries the frozen features' validation figures (equal to what
    ``baseline`` measures on the same splits), and a model that ends below them is warned
    about: a learning rate of 1e-9 leaves the head at its random initialisation."""
    cache = tmp_path / "c"
    assert main(["baseline", "--data-dir", str(folder), "--cache-dir", str(cache),
                 "--image-size", "32", "--num-workers", "0", "--tsne-points", "0",
                 "--out", str(tmp_path / "base")]) == 0
    frozen = json.loads((tmp_path / "base" / "metrics.json").read_text())
    with caplog.at_level("WARNING"):
        assert train(folder, tmp_path / "r", cache, "--lr", "1e-9") == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["frozen_val_map@all"] == frozen["val_map@all"]
    assert metrics["frozen_val_knn_acc@10"] == frozen["val_knn_acc@10"]
    validation = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert validation["frozen_val_map@all"] == frozen["val_map@all"]
    assert metrics["val_map@all"] < metrics["frozen_val_map@all"]
    assert "worse on validation than the frozen features" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert train(folder, tmp_path / "good", cache, "--epochs", "6") == 0
    good = json.loads((tmp_path / "good" / "metrics.json").read_text())
    worse = (good["val_map@all"] < good["frozen_val_map@all"]
             or good["val_knn_acc@10"] < good["frozen_val_knn_acc@10"])
    assert ("worse on validation" in caplog.text) == worse


def test_train_with_cached_augmented_views(folder: Path, tmp_path: Path) -> None:
    """--views 2 extracts two augmented views of the training images once (cached beside
    the pool's features) and trains on them; a rerun reads them from the cache."""
    cache = tmp_path / "cache"
    assert train(folder, tmp_path / "a", cache, "--epochs", "2", "--views", "2") == 0
    entries = [json.loads(p.read_text()) for p in (cache / "features").glob("*/key.json")]
    views = sorted(e["transform"]["view"] for e in entries)
    assert views == ["aug1", "aug2", "hflip", "identity"]
    subset = next(e for e in entries if e["transform"]["view"] == "aug1")
    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert "/subset:" in subset["dataset"] and subset["n_images"] == len(splits["train"])
    assert train(folder, tmp_path / "b", cache, "--epochs", "2", "--views", "2") == 0
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert a["map@all"] == b["map@all"]
    assert len(list((cache / "features").iterdir())) == 4


def test_partial_mode_trains_the_last_blocks_from_cached_activations(
        folder: Path, tmp_path: Path) -> None:
    """N = 0 is the frozen head to the last digit; N = 2 caches the activations before
    Lite0's last two blocks once, trains those blocks (moving them away from ImageNet's
    weights) and the head, and reloads from its checkpoint to the same test figures."""
    import torch

    from deephash.backbones import create_backbone
    from deephash.backbones.split import split_backbone
    from deephash.data import open_dataset
    from deephash.features import compute_features, transform_spec
    from deephash.studies.search import feature_backbone

    cache = tmp_path / "cache"
    common = ("--epochs", "2", "--no-flip-augment")
    assert train(folder, tmp_path / "frozen", cache, *common) == 0
    assert train(folder, tmp_path / "p0", cache, *common, "--mode", "partial",
                 "--trainable-blocks", "0") == 0
    frozen, p0 = (json.loads((tmp_path / r / "metrics.json").read_text())
                  for r in ("frozen", "p0"))
    assert all(frozen[k] == p0[k] for k in FLAT_KEYS)
    assert train(folder, tmp_path / "p2", cache, *common, "--mode", "partial",
                 "--trainable-blocks", "2") == 0
    names = {json.loads(p.read_text())["backbone"] for p in cache.glob("features/*/key.json")}
    assert names == {"efficientnet_lite0", "efficientnet_lite0[:-2]"}
    config, model = load_model(tmp_path / "p2" / "best.pt")
    assert config.training.mode == "partial" and model.backbone is not None
    pretrained = split_backbone(create_backbone("efficientnet_lite0"), 2, 32)[1]
    moved = [not torch.equal(a, b) for a, b in zip(model.backbone.state_dict().values(),
                                                   pretrained.state_dict().values(),
                                                   strict=True) if a.is_floating_point()]
    assert any(moved)
    # the checkpoint and the inference path (index, search) give the run's embeddings
    prefix = feature_backbone(config)
    activations = compute_features(open_dataset(str(folder)), prefix, transform_spec(prefix, 32),
                                   cache_dir=None)
    database = np.load(tmp_path / "p2" / "embeddings" / "database.npz")
    with torch.no_grad():
        again = model(torch.from_numpy(activations[database["index"]])).numpy()
    np.testing.assert_allclose(again, database["x"], atol=1e-5)
    assert main(["index", "--checkpoint", str(tmp_path / "p2" / "best.pt"), "--data-dir",
                 str(folder), "--out", str(tmp_path / "index"), "--cache-dir", str(cache)]) == 0
