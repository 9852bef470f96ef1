"""Offline triplets: (anchor, positive, negative) drawn before the network sees them.

The siamese-triplet way of training: each triplet is an anchor drawn uniformly from the
items, a positive drawn uniformly from the *other* items of its class, and a negative
drawn uniformly from the other classes — no look at distances. ``OfflineTripletSampler``
yields batches laid out as three blocks ``[anchors | positives | negatives]`` and the
``offline`` miner (:mod:`deephash.miners.offline`) reads that layout back, so offline
triplets run through the same trainer, losses and metrics as online mining, at the same
images per batch. ``fixed_triplets`` is
the seeded, reproducible set for evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from deephash.errors import ConfigError


def draw_triplets(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` item positions (anchor, positive, negative); positive != anchor.

    Anchors are drawn from classes with at least two items; negatives from all items of
    the other classes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # items grouped by class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    class_of = np.searchsorted(classes, labels)
    eligible = np.flatnonzero(counts[class_of] >= 2)
    if len(eligible) == 0 or len(counts) < 2:
        raise ConfigError("offline triplets need two classes and a class with two items")
    anchors = rng.choice(eligible, n)
    c = class_of[anchors]
    # positive: a uniform other member of the class (skip the anchor's own slot)
    rank_of = np.empty(len(labels), dtype=np.int64)
    rank_of[order] = np.arange(len(labels))
    anchor_slot = rank_of[anchors] - starts[c]
    slot = rng.integers(0, counts[c] - 1)
    slot = slot + (slot >= anchor_slot)
    positives = order[starts[c] + slot]
    # negative: a uniform item outside the class (skip the class's block)
    pick = rng.integers(0, len(labels) - counts[c])
    pick = pick + np.where(pick >= starts[c], counts[c], 0)
    negatives = order[pick]
    return np.stack([anchors, positives, negatives], axis=1)


def fixed_triplets(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The evaluation set: ``(n, 3)`` triplets, the same for the same labels and seed."""
    return draw_triplets(labels, n, np.random.default_rng([seed, 0x7E57]))


class OfflineTripletSampler:
    """Batches of ``3 * triplets_per_batch`` positions, ``[anchors | positives |
    negatives]``; epoch ``e`` comes from ``default_rng([seed, e])`` alone (replayable)."""

    def __init__(self, labels: np.ndarray, triplets_per_batch: int, seed: int,
                 batches_per_epoch: int | None = None) -> None:
        if triplets_per_batch < 1:
            raise ConfigError("a batch needs at least one triplet (3 images)")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.triplets_per_batch, self.seed = triplets_per_batch, seed
        self.batch_size = 3 * triplets_per_batch
        self.batches_per_epoch = batches_per_epoch or max(1, len(self.labels) // self.batch_size)
        draw_triplets(self.labels, 1, np.random.default_rng(0))  # refuse unusable labels now

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.batches_per_epoch):
            yield draw_triplets(self.labels, self.triplets_per_batch, rng).T.reshape(-1)
