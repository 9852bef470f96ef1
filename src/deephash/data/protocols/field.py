"""The data's own parts (``lists``) and the named protocols of the deep-hashing field.

``lists`` takes the splits a data set brings (DeepHash-pytorch's ``train.txt``,
``test.txt``, ``database.txt``; a CSV's ``split`` column): query = the query part,
database = the database part, and the training part less a seeded stratified 10 % for
validation (model selection). A named protocol (:data:`FIELD_PROTOCOLS`) states the sizes
and the mAP cut-off the field reports. Applied to data with parts it takes them as
``lists`` does, logging one warning when their sizes differ from the protocol's; applied
to data without parts (a folder, a CSV without splits) it draws them, seeded, at the
protocol's sizes, and refuses data too small for them (a smaller draw would not be the
protocol the name promises; ``holdout`` serves small data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from deephash.data.protocols import strata
from deephash.data.protocols.splits import Splits
from deephash.data.protocols.standard import (
    VAL_FRACTION,
    Draw,
    carve_validation,
    pooled_splits,
)
from deephash.errors import DataError
from deephash.labels import LabelSet, LabelsLike, as_label_set

log = logging.getLogger(__name__)

PART_NAMES = ("train", "query", "database")


@dataclass(frozen=True)
class FieldProtocol:
    """One protocol of the field: the sizes of its splits and its headline metric.

    ``queries``/``training``: the draws when the data brings no parts (``training`` is the
    field's training set; deephash validates on 10 % of it); ``queries_from_test``: the
    official test part is the query set when the data has one; ``train_in_database``: the
    training images stay in the database (else the database is every other image);
    ``database``: the field's database size, for the size warning; ``headline``: the
    metric the field reports.
    """

    name: str
    n_classes: int
    queries: Draw
    training: Draw
    database: int
    train_in_database: bool
    headline: str
    queries_from_test: bool = False

    def expected(self) -> dict[str, int]:
        """The field's sizes: query, training (train + validation), database."""
        scale = {True: self.n_classes, False: 1}
        return {"query": self.queries.count * scale[self.queries.per_class],
                "training": self.training.count * scale[self.training.per_class],
                "database": self.database}


#: the field's protocols (DeepHash-pytorch ``utils/tools.py`` and README; HashNet, ICCV 2017)
FIELD_PROTOCOLS = {p.name: p for p in (
    FieldProtocol("nus-wide-21", 21, Draw(100, True), Draw(500, True), 193_734, True,
                  "map@5000"),
    FieldProtocol("coco", 80, Draw(5_000, False), Draw(10_000, False), 117_218, True,
                  "map@5000"),
    FieldProtocol("imagenet-100", 100, Draw(50, True), Draw(130, True), 128_503, True,
                  "map@1000", queries_from_test=True),
    FieldProtocol("cifar10-54k", 10, Draw(100, True), Draw(500, True), 54_000, False,
                  "map@all"),
)}


def checked_parts(protocol: str, parts: dict[str, np.ndarray] | None,
                  n_images: int) -> dict[str, np.ndarray]:
    """``parts`` as sorted int64 arrays; ``DataError`` when the data has none or they lack a
    part or point outside the pool."""
    if parts is None:
        raise DataError(f"protocol {protocol!r} uses the data's own train/query/database parts "
                        "(list files, a CSV split column) and this data has none; use "
                        "--protocol auto (or holdout, cifar10)")
    missing = [name for name in PART_NAMES if name not in parts]
    if missing:
        raise DataError(f"protocol {protocol!r}: the data's parts lack {', '.join(missing)}; "
                        "give train, query and database lists")
    arrays = {name: np.unique(np.asarray(parts[name], dtype=np.int64)) for name in PART_NAMES}
    for name, array in arrays.items():
        outside = array[(array < 0) | (array >= n_images)]
        if outside.size:
            raise DataError(f"protocol {protocol!r}: the {name} part names image {outside[0]} "
                            f"of {n_images}; give parts of this data set")
    return arrays


def parts_splits(name: str, labels: LabelSet, parts: dict[str, np.ndarray] | None, seed: int,
                 val_fraction: float, classes: list[str] | None,
                 headline: str | None = None) -> Splits:
    """The data's parts as splits: validation a seeded stratified ``val_fraction`` of the
    labelled training part; unlabelled queries and training images are left out (one log
    line), unlabelled database images stay."""
    arrays = checked_parts(name, parts, len(labels))
    query = strata.labelled(labels, arrays["query"])
    dropped = {part: len(arrays[part]) - len(strata.labelled(labels, arrays[part]))
               for part in ("query", "train")}
    if any(dropped.values()):
        log.warning("protocol %s: left out %s unlabelled image(s) (they cannot be queries or "
                    "train)", name, " and ".join(f"{n} {part}" for part, n in dropped.items()
                                                 if n))
    rng = np.random.default_rng(seed)
    train, val = carve_validation(name, labels, arrays["train"], rng, val_fraction, classes)
    return Splits(name, seed, train=train, val=val, query=query, database=arrays["database"],
                  headline=headline)


def lists_protocol(labels: LabelsLike, is_test: np.ndarray, seed: int,
                   val_fraction: float = VAL_FRACTION, classes: list[str] | None = None,
                   parts: dict[str, np.ndarray] | None = None) -> Splits:
    """``lists``: the data's own parts (module docstring); refuses data without them."""
    return parts_splits("lists", as_label_set(labels), parts, seed, val_fraction, classes)


def field_protocol(name: str, labels: LabelsLike, is_test: np.ndarray, seed: int,
                   val_fraction: float = VAL_FRACTION, classes: list[str] | None = None,
                   parts: dict[str, np.ndarray] | None = None) -> Splits:
    """The named protocol ``name`` of :data:`FIELD_PROTOCOLS` (module docstring)."""
    spec = FIELD_PROTOCOLS[name]
    label_set = as_label_set(labels)
    is_test = np.asarray(is_test, dtype=bool)
    if parts is not None:
        splits = parts_splits(name, label_set, parts, seed, val_fraction, classes,
                              spec.headline)
    elif spec.queries_from_test and is_test.any():
        splits = pooled_splits(name, label_set, np.flatnonzero(~is_test).astype(np.int64),
                               seed, spec.queries, spec.training, spec.train_in_database,
                               val_fraction, classes, spec.headline,
                               fixed_query=strata.labelled(label_set, np.flatnonzero(is_test)))
    else:
        splits = pooled_splits(name, label_set, np.arange(len(label_set), dtype=np.int64),
                               seed, spec.queries, spec.training, spec.train_in_database,
                               val_fraction, classes, spec.headline)
    _warn_sizes(spec, splits, label_set)
    return splits


def _warn_sizes(spec: FieldProtocol, splits: Splits, labels: LabelSet) -> None:
    """One warning line when the splits' sizes are not the field's."""
    sizes = {"query": len(splits.query), "training": len(splits.train) + len(splits.val),
             "database": len(splits.database)}
    expected = spec.expected()
    if sizes != expected:
        shown = ", ".join(f"{part} {sizes[part]:,} (the field: {expected[part]:,})"
                          for part in sizes)
        log.warning("protocol %s on %d classes: %s; figures compare with the field's tables "
                    "only at its sizes", spec.name, labels.n_classes, shown)
