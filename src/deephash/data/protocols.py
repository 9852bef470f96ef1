"""Evaluation protocols: seeded train / validation / query / database splits.

Splits hold *pool indices* (see :class:`~deephash.data.dataset.ImageDataset`), sorted
ascending. Model selection reads only ``val`` (as queries) against ``train`` (as the
database); ``query`` against ``database`` is the test protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import DataError
from deephash.labels import LabelsLike, as_label_set
from deephash.registries import PROTOCOLS

SPLIT_NAMES = ("train", "val", "query", "database")


@dataclass(frozen=True)
class Splits:
    """Index arrays (``(n,)`` int64, sorted) of one protocol instance."""

    protocol: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    query: np.ndarray
    database: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    def to_json(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"protocol": self.protocol, "seed": self.seed,
                                   "sizes": self.sizes(), **(extra or {})}
        payload.update({name: getattr(self, name).tolist() for name in SPLIT_NAMES})
        path.write_text(json.dumps(payload))

    @classmethod
    def from_json(cls, path: Path) -> Splits:
        data = json.loads(Path(path).read_text())
        arrays = {name: np.asarray(data[name], dtype=np.int64) for name in SPLIT_NAMES}
        return cls(protocol=data["protocol"], seed=int(data["seed"]), **arrays)


ProtocolFn = Callable[[np.ndarray, np.ndarray, int], Splits]


def _class_counts_error(protocol: str, labels: np.ndarray, needed: int, what: str,
                        classes: list[str] | None) -> None:
    counts = np.bincount(labels)
    short = [c for c in np.unique(labels) if counts[c] < needed]
    if short:
        c = int(short[0])
        name = classes[c] if classes else str(c)
        raise DataError(f"class {name!r} has {counts[c]} image(s); protocol {protocol!r} needs "
                        f"at least {needed} per class ({what})")


def _take_per_class(indices: np.ndarray, labels: np.ndarray, count_of: Callable[[int], int],
                    rng: np.random.Generator) -> np.ndarray:
    """A seeded stratified sample of ``indices``: ``count_of(n_c)`` from each class.

    Classes are visited in label order and each draws from its own indices in ascending
    order, so the result depends only on the seed and the pool.
    """
    chosen = []
    for c in np.unique(labels[indices]):
        members = indices[labels[indices] == c]
        chosen.append(rng.permutation(members)[: count_of(len(members))])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _validation_count(val_fraction: float) -> Callable[[int], int]:
    return lambda n: max(1, round(val_fraction * n))


def train_test_protocol(labels: np.ndarray, is_test: np.ndarray, seed: int,
                        val_fraction: float = 0.1, classes: list[str] | None = None) -> Splits:
    """Query = the test part; database = the whole training part (DTSH "setting 2").

    Validation is a stratified ``val_fraction`` of the training part (at least one image
    per class, 5,000 of CIFAR-10's 50,000); ``train`` is the rest (45,000).
    """
    train_part = np.flatnonzero(~is_test).astype(np.int64)
    _class_counts_error("cifar10", labels[train_part], 2, "one for validation", classes)
    rng = np.random.default_rng(seed)
    val = _take_per_class(train_part, labels, _validation_count(val_fraction), rng)
    train = np.setdiff1d(train_part, val)
    query = np.flatnonzero(is_test).astype(np.int64)
    return Splits("cifar10", seed, train=train, val=val, query=query, database=train_part)


def dtsh_setting1(labels: np.ndarray, is_test: np.ndarray, seed: int,
                  queries_per_class: int = 100, train_per_class: int = 500,
                  val_fraction: float = 0.1, classes: list[str] | None = None) -> Splits:
    """DTSH "setting 1": train and test parts pooled (60,000 CIFAR-10 images).

    ``queries_per_class`` images per class are queries (1,000), all others the database
    (59,000); ``train_per_class`` database images per class are the labelled training set
    (5,000), of which a stratified ``val_fraction`` is held out for validation (500),
    leaving 4,500 to train on.
    """
    pool = np.arange(len(labels), dtype=np.int64)
    needed = queries_per_class + train_per_class
    _class_counts_error("dtsh-1", labels, needed,
                        f"{queries_per_class} queries + {train_per_class} training", classes)
    rng = np.random.default_rng(seed)
    query = _take_per_class(pool, labels, lambda n: queries_per_class, rng)
    database = np.setdiff1d(pool, query)
    labelled = _take_per_class(database, labels, lambda n: train_per_class, rng)
    val = _take_per_class(labelled, labels, _validation_count(val_fraction), rng)
    train = np.setdiff1d(labelled, val)
    return Splits("dtsh-1", seed, train=train, val=val, query=query, database=database)


def make_splits(protocol: str, labels: LabelsLike, is_test: np.ndarray, seed: int,
                classes: list[str] | None = None) -> Splits:
    """Build the named protocol's splits (see ``PROTOCOLS.names()``) of the images with
    label sets ``labels`` (``(N,)`` ids or a :class:`~deephash.labels.LabelSet`)."""
    label_set = as_label_set(labels)
    if not label_set.is_single:
        raise DataError(f"protocol {protocol!r} draws its splits class by class and needs one "
                        "label per image; these images have several")
    return PROTOCOLS.create(protocol, label_set.ids, is_test, seed, classes=classes)
