from __future__ import annotations

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.training.sampler import BalancedBatchSampler


def labels_of(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_batches_hold_p_classes_of_k_distinct_items() -> None:
    labels = labels_of([40, 40, 40, 40, 40])
    sampler = BalancedBatchSampler(labels, n_classes=3, n_samples=4, seed=0)
    assert len(sampler) == 200 // 12
    for batch in sampler.epoch(0):
        assert batch.shape == (12,)
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 3 and set(counts) == {4}
        assert len(np.unique(batch)) == 12


def test_an_epoch_covers_items_evenly() -> None:
    labels = labels_of([30, 30])
    sampler = BalancedBatchSampler(labels, n_classes=2, n_samples=5, seed=1)
    seen = np.concatenate(list(sampler.epoch(0)))
    assert sorted(seen.tolist()) == list(range(60))  # 6 batches of 2 x 5: each item once


def test_epochs_are_reproducible_from_seed_and_epoch() -> None:
    labels = labels_of([20, 20, 20])
    a = BalancedBatchSampler(labels, 2, 3, seed=4)
    b = BalancedBatchSampler(labels, 2, 3, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(2), b.epoch(2), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(2), a.epoch(3), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(
        a.epoch(2), BalancedBatchSampler(labels, 2, 3, seed=5).epoch(2), strict=True))


def test_small_classes_are_replaced_or_refused() -> None:
    labels = labels_of([10, 3])
    sampler = BalancedBatchSampler(labels, 2, 5, seed=0, batches_per_epoch=7)
    for batch in sampler.epoch(0):
        small = batch[labels[batch] == 1]
        assert len(small) == 5 and set(small.tolist()) <= {10, 11, 12}
    with pytest.raises(ConfigError, match="class 'b' has 3 training images, fewer than"):
        BalancedBatchSampler(labels, 2, 5, seed=0, small_classes="error", class_names=["a", "b"])


def test_a_loss_without_positives_accepts_one_image_classes() -> None:
    labels = labels_of([5, 1])
    sampler = BalancedBatchSampler(labels, 2, 3, seed=0, needs_positives=False)
    for batch in sampler.epoch(0):
        assert sorted(set(labels[batch].tolist())) == [0, 1]
        assert batch[labels[batch] == 1].tolist() == [5, 5, 5]  # the lone image, replaced


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="class 'lonely' has 1 training image"):
        BalancedBatchSampler(labels_of([5, 1]), 2, 2, seed=0, class_names=["many", "lonely"])
    with pytest.raises(ConfigError, match="at least 2 classes, the training split has 1"):
        BalancedBatchSampler(labels_of([5]), 2, 2, seed=0)
    with pytest.raises(ConfigError, match="--batch-classes must be at least 2"):
        BalancedBatchSampler(labels_of([5, 5]), 1, 2, seed=0)
    with pytest.raises(ConfigError, match="at least 2"):
        BalancedBatchSampler(labels_of([5, 5]), 2, 1, seed=0)


def test_more_batch_classes_than_present_means_all_of_them(
        caplog: pytest.LogCaptureFixture) -> None:
    """A user's 3-class folder trains with the default P = 10: every batch holds each of
    the 3 classes K times (batches of 3 x K, the epoch sized by them), and the log says so."""
    labels = np.repeat(np.arange(3), 8)
    with caplog.at_level("INFO"):
        sampler = BalancedBatchSampler(labels, 10, 4, seed=0)
    assert "--batch-classes 10 is more than the 3 classes present" in caplog.text
    assert (sampler.n_classes, sampler.batch_size, len(sampler)) == (3, 12, 2)
    assert sampler.shape == "3 x 4"
    for batch in sampler.epoch(0):
        assert np.bincount(labels[batch], minlength=3).tolist() == [4, 4, 4]
