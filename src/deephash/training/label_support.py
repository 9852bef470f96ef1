"""What a training configuration needs of the labels, refused before any work.

Every training path has a definition on multi-label data (relevance = a shared label,
:mod:`deephash.labels`): the P x K sampler (an image is a member of each of its classes),
every miner (a positive shares a label with the anchor, a negative shares none), the
triplet and pair losses, DTSH, offline tuples, Zhuang et al.'s two steps and the classifier
(sigmoid and binary cross-entropy on the multi-hot targets instead of softmax). What the
labels themselves can make impossible is refused here in one line:
:func:`check_labels_supported`, called right after the data set is opened, before any
feature extraction.

* no labelled image at all: there is nothing to learn from
  (:func:`deephash.data.unlabelled.require_labelled`, the rule every command applies);
* a loss that trains on mined tuples or on every pair of the batch (every loss but the
  classifier and the class-code methods), or Zhuang et al.'s procedure, when every two
  labelled images share a label: no tuple has a negative (:func:`has_negative_pair`); the
  shallow coders (ITQ, LSH) read no label and fit anyway.

The samplers repeat the second check on the training split
(:class:`~deephash.training.sampler.BalancedBatchSampler`), where a protocol's split may
lose the images that told the classes apart.
"""

from __future__ import annotations

import numpy as np

from deephash.data.unlabelled import require_labelled
from deephash.errors import DataError
from deephash.hashing.shallow import shallow_coder
from deephash.labels import LabelSet, LabelsLike, as_label_set, relevance
from deephash.losses import loss_traits
from deephash.training.config import TrainConfig

_CHUNK = 512  # distinct label sets compared at once: (chunk, U) booleans


def has_negative_pair(labels: LabelsLike) -> bool:
    """Whether two labelled images share no label (some tuple can have a negative).

    Single-label sets: two classes present. Multi-label sets: two *distinct* label sets
    that are disjoint, found on the ``U`` distinct labelled rows, a chunk at a time
    (O(U^2 C) time, O(chunk x U) memory).
    """
    label_set = as_label_set(labels)
    if label_set.is_single:
        ids = label_set.ids
        return len(np.unique(ids[ids >= 0])) >= 2
    rows = LabelSet.from_multi_hot(np.unique(label_set.multi_hot[label_set.labelled], axis=0))
    for start in range(0, len(rows), _CHUNK):
        if not relevance(rows[start:start + _CHUNK], rows).all():
            return True
    return False


def check_labels_supported(config: TrainConfig, labels: LabelsLike) -> None:
    """Refuse (``DataError``, one line) a training run that ``labels`` (the whole data
    set's: ``(N,)`` class ids, a :class:`~deephash.labels.LabelSet` or an ``(N, C)``
    multi-hot matrix) cannot train; call it before any feature extraction."""
    label_set = as_label_set(labels)
    require_labelled(label_set)  # the rule every command applies (deephash.data.unlabelled)
    cfg = config.training
    method = _tuple_method(cfg.procedure, cfg.loss)
    if method is not None and not has_negative_pair(label_set):
        raise DataError(f"every two labelled images share a label, so {method} has no "
                        "negative to train on; train the classifier (--loss softmax) or use "
                        "labels that tell images apart")


def _tuple_method(procedure: str, loss: str) -> str | None:
    """What trains on triplets or pairs (and so needs negatives), in words; ``None`` for
    the classifier."""
    if procedure == "zhuang":
        return "Zhuang et al.'s code inference"
    if shallow_coder(procedure) is not None:  # ITQ, LSH: fitted without labels
        return None
    traits = loss_traits(loss)
    return f"the {loss} loss" if traits.uses_miner or traits.every_pair else None


__all__ = ["check_labels_supported", "has_negative_pair"]
