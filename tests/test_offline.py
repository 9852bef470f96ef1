"""Offline triplets: the draw against brute-force enumeration, the sampler, the miner, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_frequencies, tiny_run_args

from deephash.cli import main
from deephash.data.tuples import draw_triplets, fixed_triplets
from deephash.errors import ConfigError
from deephash.miners import MiningBatch, create_miner
from deephash.training.offline import OfflineSampler

LABELS = np.array([2, 0, 2, 1, 0, 2, 3, 0, 2])  # class 1 and 3 have one item each


def test_every_drawn_triplet_is_valid_and_never_reuses_the_anchor() -> None:
    triplets = draw_triplets(LABELS, 5000, np.random.default_rng(0))
    a, p, n = triplets.T
    assert (LABELS[a] == LABELS[p]).all() and (a != p).all() and (LABELS[n] != LABELS[a]).all()
    assert not np.isin(a, [3, 6]).any()  # a single-item class cannot anchor
    assert np.isin(n, [3, 6]).any()      # ...but it serves as a negative


def test_draws_are_uniform_over_all_valid_triplets() -> None:
    """Frequencies against a brute-force list of every valid (a, p, n), each with its
    probability under the documented scheme (uniform anchor, positive, negative)."""
    eligible = [i for i in range(len(LABELS)) if (LABELS[i] == LABELS).sum() >= 2]
    expected = {}
    for a in eligible:
        positives = [p for p in range(len(LABELS)) if LABELS[p] == LABELS[a] and p != a]
        negatives = [n for n in range(len(LABELS)) if LABELS[n] != LABELS[a]]
        for p in positives:
            for n in negatives:
                expected[(a, p, n)] = 1 / len(eligible) / len(positives) / len(negatives)
    draws = 200_000
    drawn = draw_triplets(LABELS, draws, np.random.default_rng(1))
    assert_frequencies(Counter(map(tuple, drawn)), expected, draws)


def test_fixed_evaluation_set_is_reproducible_from_the_seed() -> None:
    assert np.array_equal(fixed_triplets(LABELS, 50, 3), fixed_triplets(LABELS, 50, 3))
    assert not np.array_equal(fixed_triplets(LABELS, 50, 3), fixed_triplets(LABELS, 50, 4))
    with pytest.raises(ConfigError, match="two classes"):
        fixed_triplets(np.array([0, 1, 2]), 5, 0)


def test_sampler_lays_out_blocks_and_replays_epochs() -> None:
    sampler = OfflineSampler(LABELS, tuples_per_batch=4, seed=7, batches_per_epoch=3)
    first = list(sampler.epoch(2))
    assert len(first) == len(sampler) == 3 and all(len(b) == 12 for b in first)
    assert all(np.array_equal(x, y) for x, y in zip(first, sampler.epoch(2), strict=True))
    assert not np.array_equal(first[0], next(sampler.epoch(3)))
    for batch in first:
        a, p, n = batch.reshape(3, 4)
        assert (LABELS[a] == LABELS[p]).all() and (a != p).all()
        assert (LABELS[a] != LABELS[n]).all()


def test_offline_miner_reads_the_layout_and_keeps_only_valid_triplets() -> None:
    miner = create_miner("offline", 0.2)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])  # anchors (0, 1), positives, negatives
    batch = MiningBatch(torch.zeros(6, 6), labels, torch.zeros(6, 2))
    triplets = miner.mine(batch)
    assert triplets.anchor.tolist() == [0, 1] and triplets.positive.tolist() == [2, 3]
    assert triplets.negative.tolist() == [4, 5]
    # a balanced P x K batch is not an offline layout: only positions that happen to form
    # a valid triplet are kept (here the first: labels 0 / 0 / 2), checked by brute force
    balanced = torch.tensor([0, 1, 0, 2, 2, 1, 0])
    got = miner.mine(MiningBatch(torch.zeros(7, 7), balanced, torch.zeros(7, 2)))
    expected = [(i, i + 2, i + 4) for i in range(2)
                if balanced[i] == balanced[i + 2] and balanced[i] != balanced[i + 4]]
    assert expected == [(0, 2, 4)]
    assert list(zip(got.anchor.tolist(), got.positive.tolist(), got.negative.tolist(),
                    strict=True)) == expected
    assert len(miner.mine(MiningBatch(torch.zeros(2, 2), torch.tensor([0, 0]),
                                      torch.zeros(2, 2)))) == 0


def test_training_with_offline_triplets_end_to_end(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--miner", "offline", "--embedding-dim", "8",
                 *tiny_run_args(folder, tmp_path / "c", epochs=2)]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["triplets_per_batch"] for h in history] == [4.0, 4.0]  # 3 x 4 images: 4 triplets
    assert json.loads((run / "metrics.json").read_text())["map@all"] > 0
