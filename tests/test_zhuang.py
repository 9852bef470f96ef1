"""Zhuang et al.'s two steps: code inference lowers its objective; targets for learning;
the stages run through the shared epoch driver (validation cadence, ``--resume``)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deephash.hashing.zhuang import (
    _flip_gains,
    _gaps,
    bit_targets,
    infer_codes,
    sample_triplets,
    triplet_objective,
)
from deephash.studies.train import load_trained
from deephash.training.checkpoint import read_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig, ZhuangConfig
from deephash.training.epochs import EpochRecord
from deephash.training.inputs import FeatureInputs
from deephash.training.model import build_model
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.trainer import TrainingSetup
from deephash.training.zhuang_trainer import fit_zhuang
from tests.test_trainer import saver, synthetic

STAGES = ZhuangConfig(triplets_per_image=3, sweeps=2, block_size=32, epochs_per_stage=1)


def test_sampled_triplets_are_valid_and_seeded() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    rng = np.random.default_rng(0)
    triplets = sample_triplets(labels, 50, rng)
    a, p, n = triplets.T
    assert (a != p).all() and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    assert 5 not in a  # class 2 has a single image: never an anchor
    assert set(n.tolist()) == set(range(8)) - set()  # every image serves as a negative
    again = sample_triplets(labels, 50, np.random.default_rng(0))
    assert np.array_equal(triplets, again)


def test_objective_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    codes = np.where(rng.random((6, 5)) < 0.5, 1, -1).astype(np.int8)
    triplets = np.array(list(itertools.permutations(range(6), 3))[:40])
    expected = 0.0
    for a, p, n in triplets:
        d_ap = int((codes[a] != codes[p]).sum())
        d_an = int((codes[a] != codes[n]).sum())
        expected += max(0.0, 1.5 + d_ap - d_an)
    assert triplet_objective(codes, triplets, 1.5) == pytest.approx(expected)


def test_flip_gains_are_exact() -> None:
    rng = np.random.default_rng(2)
    codes = np.where(rng.random((7, 6)) < 0.5, 1, -1).astype(np.int8)
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    triplets = sample_triplets(labels, 6, rng)
    base = triplet_objective(codes, triplets, 2.0)
    gaps = _gaps(codes, triplets)
    for bit in range(6):
        gains = _flip_gains(codes, triplets, gaps, 2.0, bit, np.arange(7))
        for image in range(7):
            flipped = codes.copy()
            flipped[image, bit] *= -1
            assert gains[image] == pytest.approx(triplet_objective(flipped, triplets, 2.0) - base)


def test_code_inference_lowers_the_objective() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 40)
    codes = np.where(rng.random((200, 16)) < 0.5, 1, -1).astype(np.int8)
    triplets = sample_triplets(labels, 10, rng)
    inferred, history = infer_codes(codes, triplets, 4.0, sweeps=6, block_size=20, rng=rng)
    assert all(b <= a for a, b in itertools.pairwise(history))
    assert history[-1] < 0.5 * history[0]
    assert set(np.unique(inferred)) <= {-1, 1}
    # classes become compact: same-class codes agree on more bits than different-class
    same = np.mean([(inferred[i] == inferred[j]).mean() for i in range(0, 200, 7)
                    for j in range(0, 200, 11) if labels[i] == labels[j] and i != j])
    other = np.mean([(inferred[i] == inferred[j]).mean() for i in range(0, 200, 7)
                     for j in range(0, 200, 11) if labels[i] != labels[j]])
    assert same > other + 0.2
    assert bit_targets(inferred).unique().tolist() == [0.0, 1.0]


def zhuang_setup(data: dict, stages: int = 3) -> tuple[TrainingSetup, TrainConfig]:
    """12-bit codes from a head with dropout (torch's generator matters) on features whose
    mirror view is drawn by the inputs' generator; checked on validation every 2 stages."""
    cfg = TrainingConfig(procedure="zhuang", epochs=stages, batch_classes=4, batch_samples=6,
                         hidden_dims=(32,), embedding_dim=12, dropout=0.2, codes=True)
    torch.manual_seed(0)
    model = build_model(cfg, data["x"].shape[1], None)
    model.head.set_feature_statistics(torch.from_numpy(data["x"][data["train"]]))
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(data["x"], data["x"] * -1.0, 0),
        loss=torch.nn.Module(), miner=None,  # type: ignore[arg-type]  # zhuang uses neither
        sampler=BalancedBatchSampler(data["labels"][data["train"]], 4, 6, 0),
        labels=data["labels"], train=data["train"], val=data["val"],
        optimizer=torch.optim.Adam(model.parameters(), lr=5e-3), epochs=stages,
        device=torch.device("cpu"), eval_distance="hamming", validate_every=2)
    return setup, TrainConfig(training=cfg)


def figures(history: list[EpochRecord]) -> list[tuple[float, ...]]:
    """Each stage's record without its timings."""
    return [(h.epoch, h.loss, h.active_fraction, h.mean_positive_distance,
             h.mean_negative_distance, h.embedding_norm, h.triplets_per_batch, h.val_map,
             h.val_knn, h.regularization) for h in history]


def test_zhuang_validates_on_the_shared_cadence_and_a_resumed_run_matches(
        tmp_path: Path) -> None:
    """Stage 2 and the last, 3, are validated (``validate_every=2``); a run killed after
    stage 1's ``last.pt`` and resumed ends with the uninterrupted run's history and
    weights."""
    data = synthetic(5)
    straight, config = zhuang_setup(data)
    full = fit_zhuang(straight, STAGES, 3.0, 7, tmp_path / "a", saver(straight, config))
    assert [np.isnan(h.val_map) for h in full] == [True, False, False]
    assert full[-1].loss < full[0].loss  # the head learns to predict the inferred bits

    first, config = zhuang_setup(data)
    save = saver(first, config)

    def save_then_die(path: Path, extra: dict[str, Any]) -> None:
        save(path, extra)
        if path.name == "last.pt" and extra["epoch"] == 0:
            raise KeyboardInterrupt  # killed after the first stage

    with pytest.raises(KeyboardInterrupt):
        fit_zhuang(first, STAGES, 3.0, 7, tmp_path / "b", save_then_die)
    resumed, config = zhuang_setup(data)
    state = read_checkpoint(tmp_path / "b" / "last.pt")
    load_trained(resumed, state)  # what deephash train --resume does
    history = fit_zhuang(resumed, STAGES, 3.0, 7, tmp_path / "b", saver(resumed, config),
                         resume_state=state)
    np.testing.assert_equal(figures(history), figures(full))
    for ours, theirs in zip(resumed.model.parameters(), straight.model.parameters(),
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    best = read_checkpoint(tmp_path / "b" / "best.pt")
    assert best["val_map"] == max(h.val_map for h in full if not np.isnan(h.val_map))
