"""Seeded stratified draws: the one rule by which every protocol draws class-balanced sets.

**The rule** (single- and multi-label alike). A draw takes ``quotas[c]`` images for each
class ``c`` among the candidates: classes are visited in ascending id order, and class
``c`` takes the first ``quotas[c]`` of a seeded random permutation of the candidates that
bear label ``c`` and were not taken yet. An image drawn for one class counts for that class
only (as in DeepHash-pytorch's NUS-WIDE script), so a draw of q per class over C classes
takes C * q images; should a class run out of untaken images (multi-label: earlier classes
took them), the draw is topped up from the untaken labelled candidates, seeded, to the sum
of the quotas. Every class present among the candidates ends up represented: it draws at
least one image, or all of its images were taken already. Unlabelled candidates are never
drawn.

On single-label data the classes are disjoint, nothing is ever topped up, and this is
exactly the draw deephash has always made: the splits of ``cifar10`` and ``dtsh-1`` are
unchanged bit for bit (``tests/test_protocols.py`` pins them).

**Quotas.** :func:`per_class` (``k`` of each class), :func:`fraction` (``round(f * share)``,
at least 1, where a class's share counts each image ``1 / its number of labels``, so the
shares sum to the number of labelled images and a 10 % draw takes about 10 % of them) and
:func:`total` (``n`` images apportioned by share, largest remainders, at least one per
class).
"""

from __future__ import annotations

import numpy as np

from deephash.errors import DataError
from deephash.labels import LabelSet


def class_counts(labels: LabelSet, candidates: np.ndarray) -> np.ndarray:
    """``(C,)`` int64: how many of ``candidates`` bear each class."""
    if labels.is_single:
        ids = labels.ids[candidates]
        return np.bincount(ids[ids >= 0], minlength=labels.n_classes).astype(np.int64)
    return labels.multi_hot[candidates].sum(axis=0, dtype=np.int64)


def class_shares(labels: LabelSet, candidates: np.ndarray) -> np.ndarray:
    """``(C,)`` float64: each candidate counts ``1 / its number of labels`` towards each of
    its classes (single-label: the class counts); the shares sum to the labelled count."""
    if labels.is_single:
        return class_counts(labels, candidates).astype(np.float64)
    hot = labels.multi_hot[candidates]
    weight = 1.0 / np.maximum(hot.sum(axis=1), 1)
    return (hot * weight[:, None]).sum(axis=0)


def per_class(labels: LabelSet, candidates: np.ndarray, k: int) -> np.ndarray:
    """``(C,)`` quotas: ``k`` for every class present among ``candidates``, else 0."""
    return np.where(class_counts(labels, candidates) > 0, k, 0).astype(np.int64)


def fraction(labels: LabelSet, candidates: np.ndarray, f: float) -> np.ndarray:
    """``(C,)`` quotas: ``max(1, round(f * share))`` for each class present (Python's
    ``round``: half to even, as deephash's validation draw always was)."""
    shares = class_shares(labels, candidates)
    return np.array([max(1, round(f * float(s))) if s > 0 else 0 for s in shares],
                    dtype=np.int64)


def total(labels: LabelSet, candidates: np.ndarray, n: int) -> np.ndarray:
    """``(C,)`` quotas summing to ``n``, apportioned by share (largest remainders, ties to
    the lower class id), at least one for each class present (``n`` must reach the number
    of classes present)."""
    shares = class_shares(labels, candidates)
    present = shares > 0
    if n < int(present.sum()):
        raise DataError(f"cannot draw {n} images covering {int(present.sum())} classes; "
                        "draw at least one per class")
    raw = n * shares / max(shares.sum(), 1e-12)
    quotas = np.where(present, np.maximum(np.floor(raw), 1), 0).astype(np.int64)
    by_remainder = np.argsort(-(raw - np.floor(raw)), kind="stable")
    while quotas.sum() < n:
        for c in by_remainder[present[by_remainder]][: n - int(quotas.sum())]:
            quotas[c] += 1
    while quotas.sum() > n:  # the minimum of one lifted small classes: trim the largest
        quotas[int(np.argmax(quotas))] -= 1
    return quotas


def stratified_draw(candidates: np.ndarray, labels: LabelSet, quotas: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """The images drawn from ``candidates`` (pool indices) by the rule of the module
    docstring: ``(sum(quotas),)`` int64 sorted pool indices, fewer only when the labelled
    candidates run out."""
    candidates = np.asarray(candidates, dtype=np.int64)
    hot = labels.multi_hot[candidates]
    free = hot.any(axis=1)  # unlabelled candidates are never drawn
    for c in np.flatnonzero(hot.any(axis=0)):
        members = np.flatnonzero(hot[:, c] & free)
        free[rng.permutation(members)[: int(quotas[c])]] = False
    taken = int((~free & hot.any(axis=1)).sum())
    short = int(quotas.sum()) - taken
    if short > 0 and free.any():
        free[rng.permutation(np.flatnonzero(free))[:short]] = False
    return np.sort(candidates[~free & hot.any(axis=1)])


def require_per_class(protocol: str, labels: LabelSet, candidates: np.ndarray, needed: int,
                      what: str, classes: list[str] | None, fix: str) -> None:
    """``DataError`` naming the first class (by id) present among ``candidates`` that has
    fewer than ``needed`` images, what they are for, and ``fix``."""
    counts = class_counts(labels, candidates)
    short = np.flatnonzero((counts > 0) & (counts < needed))
    if short.size:
        c = int(short[0])
        name = classes[c] if classes and c < len(classes) else str(c)
        raise DataError(f"class {name!r} has {counts[c]} image(s); protocol {protocol!r} needs "
                        f"at least {needed} per class ({what}); {fix}")


def require_total(protocol: str, available: int, needed: int, what: str, fix: str) -> None:
    """``DataError`` when ``available`` labelled images cannot give ``needed``."""
    if available < needed:
        raise DataError(f"protocol {protocol!r} needs {needed:,} labelled images ({what}); the "
                        f"data has {available:,}: {fix}")


def labelled(labels: LabelSet, indices: np.ndarray) -> np.ndarray:
    """The labelled ones of ``indices`` (pool indices, order kept)."""
    indices = np.asarray(indices, dtype=np.int64)
    return indices[labels.labelled[indices]]
