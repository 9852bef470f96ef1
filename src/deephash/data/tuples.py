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

:class:`TupleSource` holds what the draws need of a label set (class blocks, or each
item's counts of positives and negatives), computed once, so that a sampler drawing every
batch pays for it once; the functions below build one per call.
"""

from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.labels import LabelSet, LabelsLike, as_label_set, relevance

_CHUNK = 256  # anchors whose (chunk, N) relevance rows are held at once (multi-label)


class TupleSource:
    """The triplet and pair draws of one label set (``(N,)`` class ids, a
    :class:`~deephash.labels.LabelSet` or a multi-hot matrix), their tables computed once.

    Single-label sets draw by class blocks (O(N log N) once, O(n) per draw); multi-label
    sets by relevance (:class:`_RelevanceDraw`). Both give the same distribution on
    single-label data, and the class path keeps its exact draws. Raises ``ConfigError``
    when no item has both a positive and a negative.
    """

    def __init__(self, labels: LabelsLike) -> None:
        label_set = as_label_set(labels)
        self._kept = np.flatnonzero(label_set.labelled)
        self._complete = len(self._kept) == len(label_set)
        self._draw: _ClassDraw | _RelevanceDraw = (
            _ClassDraw(label_set.ids[self._kept]) if label_set.is_single
            else _RelevanceDraw(label_set[self._kept]))

    def _positions(self, local: np.ndarray) -> np.ndarray:
        return local if self._complete else self._kept[local]

    def triplets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 3)`` item positions (anchor, positive, negative), anchors uniform over the
        eligible items; positive != anchor."""
        draw = self._draw
        return self._positions(draw.partners(rng.choice(draw.eligible, n), rng))

    def every_anchor(self, per_anchor: int, rng: np.random.Generator) -> np.ndarray:
        """``(T, 3)`` triplets, ``per_anchor`` for every eligible anchor (Zhuang et al.'s
        sampling): anchors in class-block order (single-label) or ascending (multi-label),
        positives and negatives uniform as in :meth:`triplets`."""
        draw = self._draw
        return self._positions(draw.partners(np.repeat(draw.in_order, per_anchor), rng))

    def pairs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 3)`` rows (first, second, same): a :meth:`triplets` anchor with its positive
        (``same = 1``) or its negative (``same = 0``), each with probability 1/2."""
        triplets = self.triplets(n, rng)
        same = rng.random(n) < 0.5
        return np.stack([triplets[:, 0], np.where(same, triplets[:, 1], triplets[:, 2]),
                         same.astype(np.int64)], axis=1)

    def tuples(self, n: int, rng: np.random.Generator, tuple_size: int) -> np.ndarray:
        """:meth:`pairs` (``tuple_size = 2``) or :meth:`triplets` (3): ``(n, 3)``."""
        check_tuple_size(tuple_size)
        return self.pairs(n, rng) if tuple_size == 2 else self.triplets(n, rng)


class _ClassDraw:
    """The class-block draw of ``(N,)`` class ids, all labelled: items grouped by class
    (a stable sort), a positive the u-th other member of the anchor's block, a negative the
    u-th item outside it."""

    def __init__(self, labels: np.ndarray) -> None:
        order = np.argsort(labels, kind="stable")  # items grouped by class
        classes, starts, counts = np.unique(labels[order], return_index=True,
                                            return_counts=True)
        class_of = np.searchsorted(classes, labels)
        self.eligible = np.flatnonzero(counts[class_of] >= 2)
        if len(self.eligible) == 0 or len(counts) < 2:
            raise ConfigError("triplets need two classes and a class with two items")
        self.in_order = order[counts[class_of[order]] >= 2]  # eligible, block by block
        self.order, self.starts, self.counts, self.class_of = order, starts, counts, class_of
        self.rank_of = np.empty(len(labels), dtype=np.int64)
        self.rank_of[order] = np.arange(len(labels))
        self.n_items = len(labels)

    def partners(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.class_of[anchors]
        start, count = self.starts[c], self.counts[c]
        # positive: a uniform other member of the class (skip the anchor's own slot)
        anchor_slot = self.rank_of[anchors] - start
        slot = rng.integers(0, count - 1)
        slot = slot + (slot >= anchor_slot)
        positives = self.order[start + slot]
        # negative: a uniform item outside the class (skip the class's block)
        pick = rng.integers(0, self.n_items - count)
        pick = pick + np.where(pick >= start, count, 0)
        negatives = self.order[pick]
        return np.stack([anchors, positives, negatives], axis=1)


class _RelevanceDraw:
    """The relevance draw of a label set without unlabelled items: an eligible anchor is
    relevant to another item and irrelevant to a third; the positive (negative) is the u-th
    item of its relevance (irrelevance) row, u uniform, read a chunk of anchors at a time.

    Each item's counts come from the distinct label sets (``U`` of them, often far fewer
    than N): ``(U, U)`` relevance weighted by multiplicities, a chunk of rows at a time."""

    def __init__(self, labels: LabelSet) -> None:
        self.labels = labels
        self.n_positive = relevant_counts(labels) - 1  # not itself
        self.n_negative = len(labels) - 1 - self.n_positive
        self.eligible = np.flatnonzero((self.n_positive >= 1) & (self.n_negative >= 1))
        if len(self.eligible) == 0:
            raise ConfigError("triplets need an item that shares a label with a second "
                              "item and shares none with a third")
        self.in_order = self.eligible

    def partners(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(anchors)
        positive_slot = rng.integers(0, self.n_positive[anchors])
        negative_slot = rng.integers(0, self.n_negative[anchors])
        positives = np.empty(n, dtype=np.int64)
        negatives = np.empty(n, dtype=np.int64)
        for start in range(0, n, _CHUNK):
            part = slice(start, min(start + _CHUNK, n))
            a = anchors[part]
            relevant = relevance(self.labels[a], self.labels)  # (chunk, N); true at a itself
            irrelevant = ~relevant
            relevant[np.arange(len(a)), a] = False
            positives[part] = _nth_true(relevant, positive_slot[part])
            negatives[part] = _nth_true(irrelevant, negative_slot[part])
        return np.stack([anchors, positives, negatives], axis=1)


def relevant_counts(labels: LabelsLike) -> np.ndarray:
    """``(N,)`` int64: how many items of ``labels`` each item is relevant to, itself
    included when labelled (:func:`~deephash.labels.relevance` row sums), computed on the
    ``U`` distinct label sets: O(U^2 C) time, O(chunk x U) memory."""
    label_set = as_label_set(labels)
    distinct, inverse, multiplicity = np.unique(label_set.multi_hot, axis=0,
                                                return_inverse=True, return_counts=True)
    rows = LabelSet.from_multi_hot(distinct)
    per_distinct = np.empty(len(distinct), dtype=np.int64)
    for start in range(0, len(distinct), _CHUNK):
        part = slice(start, min(start + _CHUNK, len(distinct)))
        per_distinct[part] = relevance(rows[part], rows) @ multiplicity
    return per_distinct[inverse.reshape(-1)]


def draw_triplets(labels: LabelsLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` item positions (anchor, positive, negative) of the label set ``labels``
    (``(N,)`` class ids, a :class:`~deephash.labels.LabelSet` or a multi-hot matrix);
    positive != anchor. See :class:`TupleSource`."""
    return TupleSource(labels).triplets(n, rng)


def _draw_by_relevance(labels: LabelSet, n: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`draw_triplets` of a label set without unlabelled items through the relevance
    draw, whatever its form (on single-label sets: the class draw's distribution)."""
    draw = _RelevanceDraw(labels)
    return draw.partners(rng.choice(draw.eligible, n), rng)


def _nth_true(mask: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """``(B, N)`` bool and ``(B,)`` slots -> ``(B,)`` column of the ``slot[i]``-th (0-based)
    true entry of row i."""
    return np.argmax(np.cumsum(mask, axis=1, dtype=np.int32) > slot[:, None], axis=1)


def draw_pairs(labels: LabelsLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` rows (first, second, same): a :func:`draw_triplets` anchor with its positive
    (``same = 1``) or its negative (``same = 0``), each with probability 1/2."""
    return TupleSource(labels).pairs(n, rng)


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
    return TupleSource(labels).tuples(n, rng, tuple_size)


def fixed_tuples(labels: LabelsLike, n: int, seed: int, tuple_size: int) -> np.ndarray:
    """:func:`fixed_pairs` (``tuple_size = 2``) or :func:`fixed_triplets` (3): ``(n, 3)``."""
    check_tuple_size(tuple_size)
    return (fixed_pairs if tuple_size == 2 else fixed_triplets)(labels, n, seed)
