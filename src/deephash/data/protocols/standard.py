"""The protocols drawn from a pool: ``cifar10``, ``dtsh-1`` and ``holdout``, and the
validation carve-out that every protocol shares.

Every draw is :func:`~deephash.data.protocols.strata.stratified_draw` (its module docstring
states the rule); unlabelled images never enter train, validation or the queries, and stay
in the database where a protocol's database is "every other image".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deephash.data.protocols import strata
from deephash.data.protocols.splits import Splits
from deephash.errors import DataError
from deephash.labels import LabelSet, LabelsLike, as_label_set

#: the share of the training images held out for validation (model selection)
VAL_FRACTION = 0.1
#: how a too-small class is fixed
GROW_CLASS = "add images to the class or leave it out"


@dataclass(frozen=True)
class Draw:
    """How many images a protocol draws: ``count`` of each class (``per_class``) or
    ``count`` in all, apportioned over the classes (:func:`strata.total`)."""

    count: int
    per_class: bool

    def quotas(self, labels: LabelSet, candidates: np.ndarray) -> np.ndarray:
        if self.per_class:
            return strata.per_class(labels, candidates, self.count)
        return strata.total(labels, candidates, self.count)

    def describe(self) -> str:
        return f"{self.count:,}" + (" per class" if self.per_class else "")


def carve_validation(protocol: str, labels: LabelSet, training: np.ndarray,
                     rng: np.random.Generator, val_fraction: float,
                     classes: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: a stratified ``val_fraction`` of the labelled ``training`` images
    (at least one per class) for validation, the rest to train on."""
    training = strata.labelled(labels, training)
    if not len(training):
        raise DataError(f"protocol {protocol!r} found no labelled training images; give the "
                        "data labelled images to train on")
    strata.require_per_class(protocol, labels, training, 2, "one for validation", classes,
                             GROW_CLASS)
    val = strata.stratified_draw(training, labels, strata.fraction(labels, training,
                                                                   val_fraction), rng)
    return np.setdiff1d(training, val), val


def no_test_part(protocol: str, parts: dict[str, np.ndarray] | None) -> DataError:
    """The refusal of a protocol that needs the data's official test part."""
    fix = ("--protocol lists (the data's own parts) or auto" if parts is not None else
           "--protocol holdout (a seeded 10 % of the images as queries) or auto")
    return DataError(f"protocol {protocol!r} takes the data's official test part as queries "
                     f"and this data has none; use {fix}")


def train_test_protocol(labels: LabelsLike, is_test: np.ndarray, seed: int,
                        val_fraction: float = VAL_FRACTION, classes: list[str] | None = None,
                        parts: dict[str, np.ndarray] | None = None) -> Splits:
    """Query = the (labelled) test part; database = the whole training part (DTSH
    "setting 2", DeepHash-pytorch's ``cifar10-2``).

    Validation is a stratified ``val_fraction`` of the labelled training part (at least one
    image per class, 5,000 of CIFAR-10's 50,000); ``train`` is the rest (45,000).
    """
    label_set = as_label_set(labels)
    is_test = np.asarray(is_test, dtype=bool)
    if not is_test.any():
        raise no_test_part("cifar10", parts)
    train_part = np.flatnonzero(~is_test).astype(np.int64)
    rng = np.random.default_rng(seed)
    train, val = carve_validation("cifar10", label_set, train_part, rng, val_fraction, classes)
    query = strata.labelled(label_set, np.flatnonzero(is_test))
    return Splits("cifar10", seed, train=train, val=val, query=query, database=train_part)


def pooled_splits(name: str, labels: LabelSet, pool: np.ndarray, seed: int, queries: Draw,
                  training: Draw, train_in_database: bool, val_fraction: float,
                  classes: list[str] | None, headline: str | None = None,
                  fixed_query: np.ndarray | None = None) -> Splits:
    """Queries drawn from the labelled ``pool`` (or ``fixed_query``), the database every
    other pool image, the training set drawn from the database's labelled images (left in
    the database when ``train_in_database``, else taken out of it) and validation a
    stratified ``val_fraction`` of the training set."""
    rng = np.random.default_rng(seed)
    if fixed_query is None:
        candidates = strata.labelled(labels, pool)
        _require(name, labels, candidates, [queries, training], classes)
        query = strata.stratified_draw(candidates, labels, queries.quotas(labels, candidates),
                                       rng)
    else:
        query = fixed_query
    database = np.setdiff1d(pool, query)
    candidates = strata.labelled(labels, database)
    if fixed_query is not None:
        _require(name, labels, candidates, [training], classes)
    drawn = strata.stratified_draw(candidates, labels, training.quotas(labels, candidates), rng)
    train, val = carve_validation(name, labels, drawn, rng, val_fraction, classes)
    if not train_in_database:
        database = np.setdiff1d(database, drawn)
    return Splits(name, seed, train=train, val=val, query=query, database=database,
                  headline=headline)


def _require(name: str, labels: LabelSet, candidates: np.ndarray, draws: list[Draw],
             classes: list[str] | None) -> None:
    """Refuse data too small for ``draws`` (the queries and the training set, or the
    training set alone), naming the first short class (per-class draws) or the totals."""
    words = ["queries", "training"][-len(draws):]
    what = " + ".join(f"{d.count:,} {word}" for d, word in zip(draws, words, strict=True))
    fix = "use --protocol holdout for data this size (or lists, with the data's own parts)"
    if all(d.per_class for d in draws):
        strata.require_per_class(name, labels, candidates, sum(d.count for d in draws), what,
                                 classes, fix)
    else:
        needed = sum(d.count * (labels.n_classes if d.per_class else 1) for d in draws)
        strata.require_total(name, len(candidates), needed, what, fix)


def dtsh_setting1(labels: LabelsLike, is_test: np.ndarray, seed: int,
                  queries_per_class: int = 100, train_per_class: int = 500,
                  val_fraction: float = VAL_FRACTION, classes: list[str] | None = None,
                  parts: dict[str, np.ndarray] | None = None) -> Splits:
    """DTSH "setting 1" (DeepHash-pytorch's ``cifar10-1``): train and test parts pooled
    (60,000 CIFAR-10 images).

    ``queries_per_class`` images per class are queries (1,000), all others the database
    (59,000); ``train_per_class`` database images per class are the labelled training set
    (5,000), of which a stratified ``val_fraction`` is held out for validation (500),
    leaving 4,500 to train on.
    """
    label_set = as_label_set(labels)
    pool = np.arange(len(label_set), dtype=np.int64)
    return pooled_splits("dtsh-1", label_set, pool, seed, Draw(queries_per_class, True),
                         Draw(train_per_class, True), True, val_fraction, classes)


def holdout_protocol(labels: LabelsLike, is_test: np.ndarray, seed: int,
                     query_fraction: float = 0.1, val_fraction: float = VAL_FRACTION,
                     classes: list[str] | None = None,
                     parts: dict[str, np.ndarray] | None = None) -> Splits:
    """For any labelled data, whatever its parts (a class folder without a test part):
    a stratified ``query_fraction`` of the labelled images are the queries, every other
    image the database, and the database's labelled images the training set, a stratified
    ``val_fraction`` of them held out for validation (1,000 images of 10 classes: 100
    queries, 900 in the database, 810 to train on, 90 to validate)."""
    label_set = as_label_set(labels)
    pool = np.arange(len(label_set), dtype=np.int64)
    candidates = strata.labelled(label_set, pool)
    if not len(candidates):
        raise DataError("protocol 'holdout' needs labelled images and these have no labels; "
                        "index and search them without a protocol")
    strata.require_per_class("holdout", label_set, candidates, 3,
                             "a query, a validation and a training image", classes, GROW_CLASS)
    rng = np.random.default_rng(seed)
    query = strata.stratified_draw(candidates, label_set,
                                   strata.fraction(label_set, candidates, query_fraction), rng)
    database = np.setdiff1d(pool, query)
    train, val = carve_validation("holdout", label_set, database, rng, val_fraction, classes)
    return Splits("holdout", seed, train=train, val=val, query=query, database=database)
