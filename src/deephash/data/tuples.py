"""Seeded offline tuples drawn from labels alone: triplets and pairs.

Each triplet is an anchor drawn uniformly from the items that have a positive and a
negative, a positive drawn uniformly from the *other* items relevant to it, and a negative
drawn uniformly from the items relevant to it in nothing — no look at distances (the
siamese-triplet way). Relevance is :func:`deephash.labels.relevance`: on single-label data
a positive is an item of the anchor's class and a negative one of another class; on
multi-label data a positive shares at least one label with the anchor and a negative
shares none. Unlabelled items take no part. A pair is such an anchor with, by a fair coin,
its positive (``same = 1``) or its negative (``same = 0``), so pairs are balanced in
expectation and an item is never paired with itself. ``fixed_triplets`` and
``fixed_pairs`` are the seeded, reproducible evaluation sets; the training views are in
:mod:`deephash.training.offline`.
"""

from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.labels import LabelSet, LabelsLike, as_label_set, relevance

_CHUNK = 256  # anchors whose (chunk, N) relevance rows are held at once (multi-label)


def draw_triplets(labels: LabelsLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` item positions (anchor, positive, negative) of the label set ``labels``
    (``(N,)`` class ids, a :class:`~deephash.labels.LabelSet` or a multi-hot matrix);
    positive != anchor.

    Single-label: anchors are drawn from classes with at least two items, negatives from
    all items of the other classes. Multi-label: the same scheme with "class" read as
    "shares a label" (:func:`_draw_by_relevance`); on single-label data both give the same
    distribution, and the class path keeps its exact draws.
    """
    label_set = as_label_set(labels)
    kept = np.flatnonzero(label_set.labelled)
    if label_set.is_single:
        ids = label_set.ids
        if len(kept) < len(ids):
            return kept[_draw_by_class(ids[kept], n, rng)]
        return _draw_by_class(ids, n, rng)
    return kept[_draw_by_relevance(label_set[kept], n, rng)]


def _draw_by_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`draw_triplets` of ``(N,)`` class ids, all labelled, in O(N log N)."""
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


def _draw_by_relevance(labels: LabelSet, n: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`draw_triplets` of a label set without unlabelled items, through the
    ``(N, N)`` relevance matrix a chunk of rows at a time: an eligible anchor is relevant to
    another item and irrelevant to a third; the positive (negative) is the u-th item of
    its relevance (irrelevance) row, u uniform."""
    n_items = len(labels)
    n_positive = np.empty(n_items, dtype=np.int64)
    for start in range(0, n_items, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n_items))
        n_positive[rows] = relevance(labels[rows], labels).sum(axis=1) - 1  # not itself
    n_negative = n_items - 1 - n_positive
    eligible = np.flatnonzero((n_positive >= 1) & (n_negative >= 1))
    if len(eligible) == 0:
        raise ConfigError("offline triplets need an item that shares a label with a second "
                          "item and shares none with a third")
    anchors = rng.choice(eligible, n)
    positive_slot = rng.integers(0, n_positive[anchors])
    negative_slot = rng.integers(0, n_negative[anchors])
    positives = np.empty(n, dtype=np.int64)
    negatives = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        a = anchors[part]
        relevant = relevance(labels[a], labels)  # (chunk, N); true at the anchor itself
        irrelevant = ~relevant
        relevant[np.arange(len(a)), a] = False
        positives[part] = _nth_true(relevant, positive_slot[part])
        negatives[part] = _nth_true(irrelevant, negative_slot[part])
    return np.stack([anchors, positives, negatives], axis=1)


def _nth_true(mask: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """``(B, N)`` bool and ``(B,)`` slots -> ``(B,)`` column of the ``slot[i]``-th (0-based)
    true entry of row i."""
    return np.argmax(np.cumsum(mask, axis=1, dtype=np.int32) > slot[:, None], axis=1)


def draw_pairs(labels: LabelsLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` rows (first, second, same): a :func:`draw_triplets` anchor with its positive
    (``same = 1``) or its negative (``same = 0``), each with probability 1/2."""
    triplets = draw_triplets(labels, n, rng)
    same = rng.random(n) < 0.5
    return np.stack([triplets[:, 0], np.where(same, triplets[:, 1], triplets[:, 2]),
                     same.astype(np.int64)], axis=1)


def fixed_triplets(labels: LabelsLike, n: int, seed: int) -> np.ndarray:
    """The evaluation set: ``(n, 3)`` triplets, the same for the same labels and seed."""
    return draw_triplets(labels, n, np.random.default_rng([seed, 0x7E57]))


def fixed_pairs(labels: LabelsLike, n: int, seed: int) -> np.ndarray:
    """The evaluation set: ``(n, 3)`` (first, second, same), the same for the same labels
    and seed."""
    return draw_pairs(labels, n, np.random.default_rng([seed, 0x9A1E]))


TUPLE_SIZES = (2, 3)  # pairs, triplets


def check_tuple_size(tuple_size: int) -> None:
    if tuple_size not in TUPLE_SIZES:
        raise ConfigError(f"offline tuples are pairs (2) or triplets (3), not {tuple_size}")


def draw_tuples(labels: LabelsLike, n: int, rng: np.random.Generator,
                tuple_size: int) -> np.ndarray:
    """:func:`draw_pairs` (``tuple_size = 2``) or :func:`draw_triplets` (3): ``(n, 3)``."""
    check_tuple_size(tuple_size)
    return (draw_pairs if tuple_size == 2 else draw_triplets)(labels, n, rng)


def fixed_tuples(labels: LabelsLike, n: int, seed: int, tuple_size: int) -> np.ndarray:
    """:func:`fixed_pairs` (``tuple_size = 2``) or :func:`fixed_triplets` (3): ``(n, 3)``."""
    check_tuple_size(tuple_size)
    return (fixed_pairs if tuple_size == 2 else fixed_triplets)(labels, n, seed)
