"""``unseen:N``: retrieval of classes the model never saw (Sablayrolles, Douze, Usunier and
Jégou, "How should we evaluate supervised hashing?", ICASSP 2017, arXiv 1609.06753).

N classes are held out, chosen seeded among the classes present (recorded in
``Splits.held_out`` and ``splits.json``). The model trains and validates on the images of
the other classes only (their training part when the data has an official test part, else
all their images; validation a stratified 10 %); queries and database come from the
held-out classes only: the queries are their official test part when the data has one
(CIFAR-10, ``unseen:2``: 2,000 queries, a database of 10,000), else a seeded stratified
10 % of their images, and the database is their other images.

Single-label data only: on multi-label data an image can bear a held-out and a seen class
at once, and a query would find its relevant items through a class the model trained on,
so the figure would no longer measure unseen classes.
"""

from __future__ import annotations

import numpy as np

from deephash.data.protocols import strata
from deephash.data.protocols.splits import Splits
from deephash.data.protocols.standard import GROW_CLASS, VAL_FRACTION, carve_validation
from deephash.errors import DataError
from deephash.labels import LabelsLike, as_label_set


def unseen_protocol(labels: LabelsLike, is_test: np.ndarray, seed: int, n_held_out: int,
                    query_fraction: float = 0.1, val_fraction: float = VAL_FRACTION,
                    classes: list[str] | None = None,
                    parts: dict[str, np.ndarray] | None = None) -> Splits:
    """``unseen:<n_held_out>`` (module docstring)."""
    name = f"unseen:{n_held_out}"
    label_set = as_label_set(labels)
    if not label_set.is_single:
        raise DataError(f"protocol {name!r} holds classes out and needs one label per image; "
                        "these images have several: use --protocol lists or holdout")
    ids = label_set.ids
    is_test = np.asarray(is_test, dtype=bool)
    present = np.flatnonzero(np.bincount(ids[ids >= 0], minlength=label_set.n_classes))
    check_held_out(n_held_out, len(present))
    rng = np.random.default_rng(seed)
    held_out = np.sort(rng.choice(present, size=n_held_out, replace=False))
    is_held = np.isin(ids, held_out)
    seen = np.flatnonzero(~is_held & (ids >= 0) & ~is_test).astype(np.int64)
    train, val = carve_validation(name, label_set, seen, rng, val_fraction, classes)
    held = np.flatnonzero(is_held).astype(np.int64)
    strata.require_per_class(name, label_set, held, 2, "a query and a database image",
                             classes, GROW_CLASS)
    if is_test[held].any():
        query, database = held[is_test[held]], held[~is_test[held]]
    else:
        query = strata.stratified_draw(held, label_set,
                                       strata.fraction(label_set, held, query_fraction), rng)
        database = np.setdiff1d(held, query)
    return Splits(name, seed, train=train, val=val, query=query, database=database,
                  held_out=tuple(int(c) for c in held_out))


def check_held_out(n_held_out: int, n_classes: int) -> None:
    """``DataError`` unless 1 <= N <= C - 2 (two classes at least are left to train on)."""
    if n_classes < 3:
        raise DataError(f"protocol 'unseen:{n_held_out}' needs at least 3 classes (two to train "
                        f"on, one held out); the data has {n_classes}: use --protocol holdout")
    if not 1 <= n_held_out <= n_classes - 2:
        raise DataError(f"protocol 'unseen:{n_held_out}' holds out more classes than the data's "
                        f"{n_classes} allow (at least two are left to train on); use unseen:N "
                        f"with N from 1 to {n_classes - 2}")
