"""Seeded offline tuples drawn from labels alone: triplets and pairs.

Each triplet is an anchor drawn uniformly from the items of classes with two items or
more, a positive drawn uniformly from the *other* items of its class, and a negative drawn
uniformly from the other classes — no look at distances (the siamese-triplet way). A pair
is such an anchor with, by a fair coin, its positive (``same = 1``) or its negative
(``same = 0``), so pairs are balanced in expectation and an item is never paired with
itself. ``fixed_triplets`` and ``fixed_pairs`` are the seeded, reproducible evaluation
sets; the training views are in :mod:`deephash.training.offline`.
"""

from __future__ import annotations

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


def draw_pairs(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` rows (first, second, same): a :func:`draw_triplets` anchor with its positive
    (``same = 1``) or its negative (``same = 0``), each with probability 1/2."""
    triplets = draw_triplets(labels, n, rng)
    same = rng.random(n) < 0.5
    return np.stack([triplets[:, 0], np.where(same, triplets[:, 1], triplets[:, 2]),
                     same.astype(np.int64)], axis=1)


def fixed_triplets(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The evaluation set: ``(n, 3)`` triplets, the same for the same labels and seed."""
    return draw_triplets(labels, n, np.random.default_rng([seed, 0x7E57]))


def fixed_pairs(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The evaluation set: ``(n, 3)`` (first, second, same), the same for the same labels
    and seed."""
    return draw_pairs(labels, n, np.random.default_rng([seed, 0x9A1E]))


TUPLE_SIZES = (2, 3)  # pairs, triplets


def check_tuple_size(tuple_size: int) -> None:
    if tuple_size not in TUPLE_SIZES:
        raise ConfigError(f"offline tuples are pairs (2) or triplets (3), not {tuple_size}")


def draw_tuples(labels: np.ndarray, n: int, rng: np.random.Generator,
                tuple_size: int) -> np.ndarray:
    """:func:`draw_pairs` (``tuple_size = 2``) or :func:`draw_triplets` (3): ``(n, 3)``."""
    check_tuple_size(tuple_size)
    return (draw_pairs if tuple_size == 2 else draw_triplets)(labels, n, rng)


def fixed_tuples(labels: np.ndarray, n: int, seed: int, tuple_size: int) -> np.ndarray:
    """:func:`fixed_pairs` (``tuple_size = 2``) or :func:`fixed_triplets` (3): ``(n, 3)``."""
    check_tuple_size(tuple_size)
    return (fixed_pairs if tuple_size == 2 else fixed_triplets)(labels, n, seed)
