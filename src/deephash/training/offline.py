"""Offline triplets and pairs: tuples drawn before the network sees them.

The draws (:mod:`deephash.data.tuples`) look only at labels: uniform anchors, positives
and negatives; pairs are an anchor with its positive or its negative by a fair coin.
``OfflineSampler`` yields batches laid out as blocks, ``[anchors | positives |
negatives]`` or ``[firsts | seconds]``, and the ``offline`` / ``offline-pairs`` miners
(:mod:`deephash.miners.offline`) read that layout back, so offline tuples run through the
same trainer, losses and metrics as online mining, at the same images per batch. Labels
are class ids or label sets (:mod:`deephash.labels`): on multi-label data a positive shares
a label with its anchor and a negative shares none; unlabelled images are never drawn.
``fixed_triplets`` and ``fixed_pairs`` are the seeded, reproducible sets for evaluation
(:mod:`deephash.metrics.verification`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from deephash.data.tuples import (
    TupleSource,
    check_tuple_size,
    draw_pairs,
    draw_triplets,
    fixed_pairs,
    fixed_triplets,
    fixed_tuples,
)
from deephash.errors import ConfigError
from deephash.labels import LabelsLike, as_label_set

__all__ = ["OfflineSampler", "OfflineTupleView", "TupleSource", "draw_pairs", "draw_triplets",
           "fixed_pairs", "fixed_triplets"]


class OfflineSampler:
    """Batches of ``tuple_size * tuples_per_batch`` positions: ``[anchors | positives |
    negatives]`` (``tuple_size = 3``) or ``[firsts | seconds]`` (2); epoch ``e`` comes from
    ``default_rng([seed, e])`` alone (replayable). ``labels``: ``(N,)`` class ids, a
    :class:`~deephash.labels.LabelSet` or a multi-hot matrix; the draw tables are built
    here, once (unusable labels are refused now, ``ConfigError``)."""

    def __init__(self, labels: LabelsLike, tuples_per_batch: int, seed: int,
                 batches_per_epoch: int | None = None, tuple_size: int = 3) -> None:
        check_tuple_size(tuple_size)
        if tuples_per_batch < 1:
            raise ConfigError(f"a batch needs at least one tuple ({tuple_size} images)")
        self.labels = as_label_set(labels)
        self.tuples_per_batch, self.seed, self.tuple_size = tuples_per_batch, seed, tuple_size
        self.batch_size = tuple_size * tuples_per_batch
        labelled = int(self.labels.labelled.sum())
        self.batches_per_epoch = batches_per_epoch or max(1, labelled // self.batch_size)
        self.source = TupleSource(self.labels)

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def shape(self) -> str:
        """``"53 triplets"`` (or pairs)."""
        return f"{self.tuples_per_batch} {'triplets' if self.tuple_size == 3 else 'pairs'}"

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.batches_per_epoch):
            tuples = self.source.tuples(self.tuples_per_batch, rng, self.tuple_size)
            yield tuples[:, :self.tuple_size].T.reshape(-1)


class Indexable(Protocol):
    def __getitem__(self, index: int) -> Any: ...


class OfflineTupleView:
    """A dataset of offline tuples over ``items`` (anything indexable by position, e.g. a
    ``torch.utils.data.Dataset`` of tensors), for code that brings its own loop.

    Item ``i`` is ``(items[first], items[second], same)`` (``tuple_size = 2``, ``same`` a
    bool) or ``(items[anchor], items[positive], items[negative])`` (3). ``fixed=True`` is the
    evaluation view: :func:`fixed_pairs` / :func:`fixed_triplets`, the same for every epoch;
    otherwise ``set_epoch(e)`` draws epoch ``e``'s tuples from ``default_rng([seed, e])``
    (training; replayable).
    """

    def __init__(self, items: Indexable, labels: LabelsLike, size: int, seed: int,
                 tuple_size: int = 2, fixed: bool = False) -> None:
        check_tuple_size(tuple_size)
        self.items, self.labels = items, as_label_set(labels)
        self.source = TupleSource(self.labels)
        self.size, self.seed, self.tuple_size, self.fixed = size, seed, tuple_size, fixed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if self.fixed:
            self.tuples = fixed_tuples(self.labels, self.size, self.seed, self.tuple_size)
        else:
            self.tuples = self.source.tuples(self.size, np.random.default_rng([self.seed, epoch]),
                                             self.tuple_size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
        row = self.tuples[index]
        if self.tuple_size == 2:
            return self.items[int(row[0])], self.items[int(row[1])], bool(row[2])
        return self.items[int(row[0])], self.items[int(row[1])], self.items[int(row[2])]
