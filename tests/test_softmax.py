"""The softmax classification baseline: the loss by hand, training, checkpoints, resume,
and the classifier-output codes read off it."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_run_args

from deephash.cli import main
from deephash.data import Splits
from deephash.errors import ConfigError
from deephash.labels import LabelSet
from deephash.losses import LossTraits, SoftmaxLoss, create_loss, loss_traits
from deephash.metrics.classifier_codes import evaluate_classifier_codes
from deephash.pipeline.config import EvalConfig
from deephash.pipeline.evaluate import classifier_code_metrics
from deephash.pipeline.results import evaluation_spec
from deephash.training.checkpoint import read_checkpoint


@pytest.mark.parametrize("reduction", ["mean", "mean_active", "sum"])
def test_cross_entropy_and_errors_against_a_loop(reduction: str) -> None:
    torch.manual_seed(0)
    loss = create_loss("softmax", 0.0, reduction=reduction, num_classes=3, embedding_dim=4)
    assert isinstance(loss, SoftmaxLoss) and not loss.uses_miner and not loss.uses_margin
    x = torch.randn(7, 4, dtype=torch.float64)
    loss.double()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    out = loss.compute(x, labels)
    w, b = loss.classifier.weight.detach(), loss.classifier.bias.detach()
    values, wrong = [], 0
    for row, label in zip(x.tolist(), labels.tolist(), strict=True):
        logits = [sum(wi * xi for wi, xi in zip(w[c].tolist(), row, strict=True)) + b[c].item()
                  for c in range(3)]
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
        values.append(log_sum - logits[label])
        wrong += int(max(range(3), key=lambda c: logits[c]) != label)
    expected = sum(values) if reduction == "sum" else sum(values) / len(values)
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    assert out.n_items == 7 and out.n_active == wrong
    assert math.isnan(out.mean_positive_distance)
    out.loss.backward()
    assert loss.classifier.weight.grad is not None


def test_a_classifier_needs_its_shape() -> None:
    with pytest.raises(ConfigError, match="two classes"):
        create_loss("softmax", 0.0, num_classes=1, embedding_dim=4)
    with pytest.raises(ConfigError, match="two classes"):
        create_loss("softmax", 0.0)  # a caller that forgot the data set's classes
    with pytest.raises(ConfigError, match="embedding's width"):
        create_loss("softmax", 0.0, num_classes=3)
    assert loss_traits("softmax") == LossTraits(uses_margin=False, uses_miner=False, accepts=())
    assert loss_traits("contrastive").accepts == ("triplets", "pairs")


def train(folder: Path, tmp_path: Path, run: Path, epochs: int, *extra: str) -> int:
    return main(["train", "--out", str(run), "--loss", "softmax", "--embedding-dim", "8",
                 *tiny_run_args(folder, tmp_path / "c", epochs=epochs), *extra])


def test_softmax_training_end_to_end(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(folder, tmp_path, run, 2) == 0
    best = read_checkpoint(run / "best.pt")
    assert best["loss"]["classifier.weight"].shape == (3, 8)  # 3 classes x embedding
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["classifier_acc"] <= 1.0 and metrics["map@all"] > 0
    history = json.loads((run / "history.json").read_text())
    assert all(0.0 <= h["active_fraction"] <= 1.0 for h in history)  # the training error


def test_classifier_codes_are_read_off_the_trained_classifier(folder: Path,
                                                              tmp_path: Path) -> None:
    """The ``classifier_codes_*`` figures are those of the saved query and database
    embeddings through the best checkpoint's classifier (Sablayrolles et al.)."""
    run = tmp_path / "run"
    assert train(folder, tmp_path, run, 2) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    weights = read_checkpoint(run / "best.pt")["loss"]
    w, b = weights["classifier.weight"].double(), weights["classifier.bias"].double()
    saved = {name: np.load(run / "embeddings" / f"{name}.npz") for name in ("query", "database")}
    logits = {name: (torch.from_numpy(s["x"]).double() @ w.T + b).numpy()
              for name, s in saved.items()}
    expected = evaluate_classifier_codes(
        logits["query"], logits["database"].argmax(axis=1), saved["query"]["y"],
        saved["database"]["y"], evaluation_spec(EvalConfig()))
    assert metrics["classifier_codes_bits"] == 2  # three classes
    for key, value in expected.items():
        assert metrics[f"classifier_codes_{key}"] == pytest.approx(value, abs=1e-6), key
    assert "classifier_codes_knn_acc@1" not in metrics


def test_classifier_codes_skip_multi_label_data_with_a_note(
        caplog: pytest.LogCaptureFixture) -> None:
    loss = SoftmaxLoss(embedding_dim=4, num_classes=3)
    labels = LabelSet.from_lists([[0, 1], [2], [1], [0]], 3)
    empty = np.array([], dtype=np.int64)
    splits = Splits("test", 0, empty, empty, np.array([0, 1]), np.array([2, 3]))
    with caplog.at_level(logging.INFO, logger="deephash.pipeline.evaluate"):
        got = classifier_code_metrics(loss, np.ones((4, 4), np.float32), labels, splits,
                                      EvalConfig(), torch.device("cpu"))
    assert got == {}
    assert [r.getMessage() for r in caplog.records] == [
        "classifier codes skipped: they store one predicted class per image, and these "
        "labels are multi-label"]
