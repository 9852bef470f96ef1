"""Balanced P x K batches, driven by an explicit seed; ``build_sampler`` picks the sampler a
miner needs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from deephash.errors import ConfigError
from deephash.labels import LabelSet, LabelsLike, as_label_set
from deephash.training.config import TrainingConfig
from deephash.training.label_support import has_negative_pair
from deephash.training.offline import OfflineSampler

log = logging.getLogger(__name__)

SMALL_CLASS_POLICIES = ("replace", "error")


class BatchSampler(Protocol):
    """What the trainer reads: ``epoch(e)`` yields the position batches of epoch ``e``."""

    batch_size: int

    @property
    def shape(self) -> str:
        """The batch's make-up for the log: ``"10 x 16"``, ``"53 triplets"``."""
        ...

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[np.ndarray]: ...


class BalancedBatchSampler:
    """Batches of ``n_classes`` (P) distinct classes with ``n_samples`` (K) items each; P
    more than the classes present means all of them (a data set of 5 classes trains with
    the default P = 10, in batches of 5 x K), and says so in the log.

    Within a class, items are drawn without replacement from a shuffled queue that is
    refilled when it runs out, so an epoch covers every item about equally often. A class
    with fewer than K items is sampled with replacement (``small_classes="replace"``) or
    refused at construction (``"error"``); a class with a single item can never provide a
    positive pair and is refused, unless the loss needs no positives
    (``needs_positives=False``: the softmax classifier).

    Multi-label data: an image is a member of every class it has, so its class's K items
    always share that class and every position of a batch has a positive. An image that
    has two of the batch's classes may be drawn for both; it is **not** deduplicated (the
    batch keeps its P*K positions, which the distributed trainer splits evenly): its two
    positions are positives of each other at distance 0 to the miner, like a small class's
    repeats. A metric loss also needs negatives, so labels where no two images share *no*
    label are refused. Unlabelled images (id ``-1``, an empty label set) are never sampled;
    ``batches_per_epoch`` defaults to the labelled images over the batch size.

    Epoch ``e`` is generated from ``np.random.default_rng([seed, e])`` alone, so any epoch
    can be replayed (a resumed run sees the same batches as an uninterrupted one).

    Args:
        labels: the items to sample (positions 0..N-1 are yielded): ``(N,)`` class ids, a
            :class:`~deephash.labels.LabelSet` or an ``(N, C)`` multi-hot matrix.
        batches_per_epoch: defaults to (labelled N) // (P*K), at least 1.
    """

    def __init__(self, labels: LabelsLike, n_classes: int, n_samples: int, seed: int,
                 batches_per_epoch: int | None = None, small_classes: str = "replace",
                 class_names: list[str] | None = None, needs_positives: bool = True) -> None:
        if small_classes not in SMALL_CLASS_POLICIES:
            raise ConfigError(f"small_classes must be one of {SMALL_CLASS_POLICIES}")
        least = 2 if needs_positives else 1
        if n_samples < least:
            raise ConfigError(f"--batch-samples must be at least {least} (got {n_samples})"
                              + (": a triplet needs two images of its anchor's class"
                                 if needs_positives else ""))
        self.labels = as_label_set(labels)
        self.members = class_members(self.labels)
        self.classes = np.fromiter(self.members, dtype=np.int64, count=len(self.members))
        name = (lambda c: class_names[c]) if class_names else str
        for c, items in self.members.items():
            if len(items) < least:
                raise ConfigError(f"class {name(c)!r} has 1 training image; triplet and pair "
                                  "mining need at least 2 per class (remove the class or add "
                                  "images)")
            if len(items) < n_samples and small_classes == "error":
                raise ConfigError(f"class {name(c)!r} has {len(items)} training images, fewer "
                                  f"than --batch-samples {n_samples}; lower it or allow "
                                  "sampling with replacement")
        if len(self.classes) < 2:
            raise ConfigError(f"training needs images of at least 2 classes, the training "
                              f"split has {len(self.classes)}")
        if n_classes < 2:
            raise ConfigError(f"--batch-classes must be at least 2 (got {n_classes})")
        if n_classes > len(self.classes):
            log.info("--batch-classes %d is more than the %d classes present: every batch "
                     "holds all %d", n_classes, len(self.classes), len(self.classes))
            n_classes = len(self.classes)
        if needs_positives and not has_negative_pair(self.labels):
            raise ConfigError("every two training images share a label, so no triplet or pair "
                              "has a negative; train the softmax classifier (--loss softmax) "
                              "or use labels that tell images apart")
        self.n_classes, self.n_samples, self.seed = n_classes, n_samples, seed
        self.batch_size = n_classes * n_samples
        labelled = int(self.labels.labelled.sum())
        self.batches_per_epoch = batches_per_epoch or max(1, labelled // self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def shape(self) -> str:
        """``"P x K"``."""
        return f"{self.n_classes} x {self.n_samples}"

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """The ``(P*K,)`` position batches of one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        queues = {c: rng.permutation(items) for c, items in self.members.items()}
        heads = dict.fromkeys(self.members, 0)
        for _ in range(self.batches_per_epoch):
            batch = []
            for c in rng.choice(self.classes, self.n_classes, replace=False):
                c = int(c)
                items = self.members[c]
                if len(items) < self.n_samples:
                    batch.append(rng.choice(items, self.n_samples, replace=True))
                    continue
                if heads[c] + self.n_samples > len(items):
                    queues[c], heads[c] = rng.permutation(items), 0
                batch.append(queues[c][heads[c]:heads[c] + self.n_samples])
                heads[c] += self.n_samples
            yield np.concatenate(batch)


def class_members(labels: LabelSet) -> dict[int, np.ndarray]:
    """Each class present -> ``(n_c,)`` ascending positions of its members, classes
    ascending; an image with several labels is a member of each, an unlabelled one of
    none."""
    if labels.is_single:
        ids = labels.ids
        return {int(c): np.flatnonzero(ids == c) for c in np.unique(ids[ids >= 0])}
    hot = labels.multi_hot
    return {int(c): np.flatnonzero(hot[:, c]) for c in np.flatnonzero(hot.any(axis=0))}


def build_sampler(cfg: TrainingConfig, labels: LabelsLike, seed: int,
                  offline_tuple_size: int | None = None,
                  class_names: list[str] | None = None,
                  needs_positives: bool = True) -> BalancedBatchSampler | OfflineSampler:
    """The balanced P x K sampler, or, for an offline miner (``offline_tuple_size`` 2 or 3),
    pre-formed tuples from the same number of images per batch. ``needs_positives=False``
    (a loss without a miner) lets one-image classes into the balanced batches."""
    batches = cfg.batches_per_epoch or None
    if offline_tuple_size:
        return OfflineSampler(labels, cfg.batch_classes * cfg.batch_samples // offline_tuple_size,
                              seed, batches, offline_tuple_size)
    return BalancedBatchSampler(labels, cfg.batch_classes, cfg.batch_samples, seed, batches,
                                cfg.small_classes, class_names, needs_positives)
