"""Code health (distinct codes, bit balance, bit entropy) and DTSH's defaults not collapsing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from deephash.hashing.codes import binarize, pack_codes
from deephash.hashing.health import code_health
from deephash.losses import create_loss
from deephash.miners import create_miner
from deephash.studies.configs import dtsh_training
from deephash.studies.train import parse_weights
from deephash.training.config import TrainingConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import build_model
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.trainer import TrainingSetup, embed, fit


def test_code_health_by_hand() -> None:
    codes = np.array([[1, 1, -1], [1, -1, -1], [1, 1, -1], [1, -1, -1]])  # 2 distinct
    health = code_health(pack_codes(codes), 3)
    assert health.distinct == 2
    assert health.bit_balance == (1.0, 0.5, 0.0)
    assert health.bit_entropy == pytest.approx((0 + 1 + 0) / 3)
    assert health.problems(n_classes=3) == ["2 distinct code(s) for 3 classes",
                                            "2 of 3 bits constant",
                                            "mean bit entropy 0.33 < 0.5"]
    assert health.as_metrics() == {"code_distinct": 2, "code_bit_balance": [1.0, 0.5, 0.0],
                                   "code_bit_entropy": pytest.approx(1 / 3)}


def test_code_health_of_random_codes_and_odd_lengths() -> None:
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((4000, 12)) < 0.25, 1, -1)
    health = code_health(pack_codes(codes), 12)  # 12 bits: padding bits must not count
    assert len(health.bit_balance) == 12
    assert np.allclose(health.bit_balance, 0.25, atol=0.03)
    entropy = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert health.bit_entropy == pytest.approx(entropy, abs=0.02)
    assert health.distinct == len({tuple(row) for row in codes})
    assert health.problems(n_classes=10) == []
    with pytest.raises(ValueError):
        code_health(np.zeros((0, 2), np.uint8), 12)


def train_dtsh_codes(training: TrainingConfig, seed: int = 0) -> np.ndarray:
    """DTSH's default head trained on a small set (10 classes x 30 non-negative, ReLU-like
    features); returns the ``(300, 48)`` relaxed codes of every item."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), 30)
    centres = rng.normal(size=(10, 64))
    x = np.maximum(centres[labels] * 0.5 + rng.normal(size=(300, 64)), 0).astype(np.float32)
    order = rng.permutation(300)
    val, train = np.sort(order[:60]), np.sort(order[60:])
    cfg = dataclasses.replace(training, epochs=15, batch_classes=10, batch_samples=16)
    torch.manual_seed(seed)
    model = build_model(cfg, 64, None)
    model.head.set_feature_statistics(torch.from_numpy(x[train]))
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(x, None, seed),
        loss=create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction),
        miner=create_miner(cfg.miner, cfg.margin, seed),
        sampler=BalancedBatchSampler(labels[train], 10, 16, seed), labels=labels, train=train,
        val=val, optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr,
                                            weight_decay=cfg.weight_decay),
        epochs=cfg.epochs, device=torch.device("cpu"), eval_distance="hamming",
        regularizers=parse_weights(cfg.regularizers))
    fit(setup, Path("unused"), lambda path, extra: None)
    return embed(model, setup.inputs, np.arange(300), torch.device("cpu"))


@pytest.mark.parametrize("seed", [0, 1])
def test_dtsh_defaults_do_not_collapse_on_a_small_training_set(seed: int) -> None:
    defaults = dtsh_training()
    healthy = code_health(pack_codes(binarize(train_dtsh_codes(defaults, seed))), 48)
    assert healthy.bit_entropy > 0.8 and healthy.distinct == 300
    # the sensitivity of this test: DTSH's own terms alone (no balance) collapse here
    without = dataclasses.replace(defaults, regularizers=("quantization=0.1",))
    collapsed = code_health(pack_codes(binarize(train_dtsh_codes(without, seed))), 48)
    assert collapsed.bit_entropy < 0.5


def test_collapsed_database_codes_are_reported_and_warned(
        caplog: pytest.LogCaptureFixture) -> None:
    from deephash.studies.train import database_code_health

    relaxed = np.tile(np.array([[0.9, -0.8, 0.7, 0.6]]), (50, 1))  # one code for all
    relaxed[::2, 0] = -0.5  # two codes
    with caplog.at_level("WARNING"):
        metrics = database_code_health(relaxed, n_classes=10)
    assert metrics["code_distinct"] == 2
    assert metrics["code_bit_balance"] == [0.5, 0.0, 1.0, 1.0]
    assert "collapsing (2 distinct code(s) for 10 classes; 3 of 4 bits constant" in caplog.text
    caplog.clear()
    rng = np.random.default_rng(0)
    with caplog.at_level("WARNING"):
        database_code_health(rng.normal(size=(500, 16)), n_classes=10)
    assert "collapsing" not in caplog.text


def test_the_collapse_warning_suggests_what_fits_the_training() -> None:
    """DTSH and FaceNet have a margin to lower; DPSH and HashNet have their own options
    instead; ITQ has no training to change."""
    from deephash.pipeline.evaluate import collapse_remedy
    from deephash.registries import HASHING_METHODS
    from deephash.training.config import TrainingConfig

    def remedy(method: str) -> str:
        return collapse_remedy(HASHING_METHODS.create(method, TrainingConfig(embedding_dim=48)))

    dtsh = collapse_remedy(dtsh_training())
    assert "on by default for DTSH" in dtsh and "--margin" in dtsh
    facenet = collapse_remedy(TrainingConfig(loss="facenet"))
    assert "--margin" in facenet and "DTSH" not in facenet
    for method in ("dpsh", "hashnet"):
        assert "--margin" not in remedy(method) and "--loss-options" in remedy(method)
    assert "eta=" in remedy("dpsh") and "alpha=" in remedy("hashnet")
    assert remedy("itq").startswith("train the codes instead")
