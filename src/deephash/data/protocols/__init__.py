"""Evaluation protocols: seeded train / validation / query / database splits.

Splits hold *pool indices* (see :class:`~deephash.data.dataset.ImageDataset`), sorted
ascending. Model selection reads only ``val`` (as queries) against ``train`` (as the
database); ``query`` against ``database`` is the test protocol. The protocols
(``PROTOCOLS``, docs/protocols.md):

* ``cifar10``, ``dtsh-1``, ``holdout`` (:mod:`.standard`): drawn from the pool;
* ``lists`` and the field's ``nus-wide-21``, ``coco``, ``imagenet-100``, ``cifar10-54k``
  (:mod:`.field`): the data's own parts, or drawn at the field's sizes;
* ``unseen:N`` (:mod:`.unseen`): N classes held out of training;
* ``auto`` (the default): ``lists`` when the data brings its parts, ``cifar10`` when it has
  an official test part, else ``holdout``.

Every class-balanced draw follows one rule, on single- and multi-label data alike
(:mod:`.strata`).
"""

from __future__ import annotations

import numpy as np

from deephash.data.protocols.splits import SPLIT_NAMES, Splits
from deephash.data.protocols.standard import dtsh_setting1, holdout_protocol, train_test_protocol
from deephash.labels import LabelsLike, as_label_set
from deephash.registries import PROTOCOLS, parse_protocol

#: what ``auto`` picks, and why (in the words the log line uses)
AUTO_CHOICES = {"lists": "the data brings its own train/query/database parts",
                "cifar10": "the data has an official test part",
                "holdout": "the data has no test part: a stratified 10 % are the queries"}


def resolve_protocol(protocol: str, is_test: np.ndarray,
                     parts: dict[str, np.ndarray] | None) -> str:
    """``auto`` -> ``lists`` (the data brings its parts), ``cifar10`` (it has an official
    test part) or ``holdout`` (:data:`AUTO_CHOICES`); any other name as it is."""
    if protocol != "auto":
        return protocol
    if parts is not None:
        return "lists"
    return "cifar10" if np.asarray(is_test, dtype=bool).any() else "holdout"


def make_splits(protocol: str, labels: LabelsLike, is_test: np.ndarray, seed: int,
                classes: list[str] | None = None,
                parts: dict[str, np.ndarray] | None = None) -> Splits:
    """The named protocol's splits (``auto``, ``PROTOCOLS.names()``, ``unseen:N``) of the
    images with label sets ``labels`` (``(N,)`` ids, ``(N, C)`` multi-hot or a
    :class:`~deephash.labels.LabelSet`), official test part ``is_test`` ``(N,)`` bool and
    own parts ``parts`` (``ImageDataset.parts``)."""
    name = resolve_protocol(protocol, is_test, parts)
    entry, parameter = parse_protocol(name)
    extra = {} if parameter is None else {"n_held_out": parameter}
    return PROTOCOLS.create(entry, as_label_set(labels), np.asarray(is_test, dtype=bool), seed,
                            classes=classes, parts=parts, **extra)


__all__ = ["AUTO_CHOICES", "PROTOCOLS", "SPLIT_NAMES", "Splits", "dtsh_setting1",
           "holdout_protocol", "make_splits", "resolve_protocol", "train_test_protocol"]
