"""Training runs as step generators, run to the end one at a time or in turn.

A training run that yields once per epoch (:func:`deephash.training.epochs.epoch_steps`,
:func:`deephash.studies.train.train_steps`) is run alone by :func:`finish`, or with others
by :func:`in_turn`: one epoch of each in turn, so that a slow drift of the machine (another
job starting, a thermal limit) falls on every run alike instead of on whichever ran then.
A run's results do not depend on the order: the epoch driver keeps each run's share of
torch's global random state across its pauses.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, TypeVar

K = TypeVar("K")
R = TypeVar("R")

#: a training run that yields after each epoch and returns its result
Steps = Generator[Any, None, R]


def finish(steps: Steps[R]) -> R:
    """Run ``steps`` to its end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def in_turn(runs: Mapping[K, Steps[R]]) -> dict[K, R]:
    """One step of each run in turn (in ``runs``' order) until all have ended; each run's
    result. When one fails, the others are closed (their run folders record that they
    stopped) and the error propagates."""
    results: dict[K, R] = {}
    active = dict(runs)
    try:
        while active:
            for key, steps in list(active.items()):
                try:
                    next(steps)
                except StopIteration as done:
                    results[key] = done.value
                    del active[key]
    finally:
        for steps in active.values():
            steps.close()
    return results
