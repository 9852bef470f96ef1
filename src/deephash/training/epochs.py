"""The epoch driver every training procedure shares (:func:`run_epochs`).

A procedure (:class:`Procedure`: the triplet trainer's epoch of mined batches, Zhuang et
al.'s stage of code inference and bit learning) plugs in one epoch's work; the driver
owns the rest: the loop over ``setup.epochs``, validation (every
``setup.validate_every``-th epoch and the last; the others record NaN), ``history``,
``best.pt`` (the highest validation mAP@all, the first such epoch on ties) and
``last.pt`` with everything ``--resume`` needs: the optimizer, the procedure's own state
(the learning-rate schedule, Zhuang's random generator), the random generators of the
miner, the inputs and torch, and the history. Under torchrun rank 0 alone writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from deephash.distributed import barrier, ranks
from deephash.errors import TrainingError
from deephash.training.evaluation import validate
from deephash.training.setup import TrainingSetup

log = logging.getLogger(__name__)

#: ``save(path, extra)`` writes a checkpoint of the model with ``extra``
Save = Callable[[Path, dict[str, Any]], None]


@dataclass
class EpochRecord:
    """One line of ``history.json``."""

    epoch: int
    loss: float
    active_fraction: float
    mean_positive_distance: float
    mean_negative_distance: float
    embedding_norm: float
    triplets_per_batch: float
    empty_batches: int
    train_seconds: float
    val_map: float
    val_knn: float
    elapsed_seconds: float
    margin: float = math.nan
    regularization: float = 0.0


@dataclass
class EpochStats:
    """What one epoch of a procedure reports: the training part of its
    :class:`EpochRecord`, and ``summary``, the start of its log line."""

    loss: float
    active_fraction: float
    mean_positive_distance: float
    mean_negative_distance: float
    embedding_norm: float
    triplets_per_batch: float
    empty_batches: int
    margin: float
    regularization: float
    summary: str


class Procedure(Protocol):
    """One epoch's work of a training procedure, and the state it needs to resume."""

    unit: str  # what an epoch is called in the log ("epoch", "stage")

    def start(self) -> None:
        """Called once before the first epoch, after any resume state is loaded."""

    def train(self, epoch: int) -> EpochStats:
        """Train epoch ``epoch`` (0-based)."""

    def state_dict(self) -> dict[str, Any]:
        """The procedure's own resume state, saved in ``last.pt`` beside the driver's."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` from a ``last.pt``."""


def run_epochs(setup: TrainingSetup, procedure: Procedure, run: Path, save: Save,
               resume_state: dict[str, Any] | None = None) -> list[EpochRecord]:
    """Train ``procedure`` for ``setup.epochs`` epochs, or the rest of them after
    ``resume_state`` (a ``last.pt``; the model's weights are the caller's to load);
    returns the whole history."""
    history: list[EpochRecord] = []
    best, start_epoch, elapsed = -1.0, 0, 0.0
    if resume_state is not None:
        setup.optimizer.load_state_dict(resume_state["optimizer"])
        procedure.load_state_dict(resume_state)
        history = [EpochRecord(**h) for h in resume_state["history"]]
        best, start_epoch = resume_state["best_val_map"], resume_state["epoch"] + 1
        elapsed = history[-1].elapsed_seconds if history else 0.0
        _set_generator_states(setup, resume_state["generators"])
        log.info("resuming after %s %d (best validation mAP %.4f)", procedure.unit,
                 start_epoch, best)
    procedure.start()
    if not ranks().main:
        save = _no_save
    for epoch in range(start_epoch, setup.epochs):
        started = time.perf_counter()
        stats = procedure.train(epoch)
        train_seconds = time.perf_counter() - started
        due = (epoch + 1) % setup.validate_every == 0 or epoch == setup.epochs - 1
        val_map, val_knn = validate(setup) if due else (math.nan, math.nan)
        elapsed += time.perf_counter() - started
        record = EpochRecord(epoch, stats.loss, stats.active_fraction,
                             stats.mean_positive_distance, stats.mean_negative_distance,
                             stats.embedding_norm, stats.triplets_per_batch,
                             stats.empty_batches, train_seconds, val_map, val_knn, elapsed,
                             stats.margin, stats.regularization)
        history.append(record)
        log.info("%s, val mAP %.4f, val 10-NN %.4f (%.1f s)", stats.summary, val_map, val_knn,
                 train_seconds)
        if due and val_map > best:
            best = val_map
            save(run / "best.pt", {"epoch": epoch, "val_map": val_map})
        save(run / "last.pt", {
            "epoch": epoch, "best_val_map": best, "optimizer": setup.optimizer.state_dict(),
            **procedure.state_dict(), "history": [asdict(h) for h in history],
            "generators": _generator_states(setup)})
    barrier()  # rank 0's checkpoints are written
    return history


def _no_save(path: Path, extra: dict[str, Any]) -> None:
    """Ranks other than 0 write nothing."""


def _generators(setup: TrainingSetup) -> dict[str, torch.Generator]:
    found = {}
    for name, owner in (("miner", setup.miner), ("inputs", setup.inputs)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            found[name] = generator
    return found


def _generator_states(setup: TrainingSetup) -> dict[str, torch.Tensor]:
    states = {name: g.get_state() for name, g in _generators(setup).items()}
    states["torch"] = torch.get_rng_state()  # dropout
    return states


def _set_generator_states(setup: TrainingSetup, states: dict[str, torch.Tensor]) -> None:
    for name, generator in _generators(setup).items():
        if name in states:
            generator.set_state(states[name])
    if "torch" in states:
        torch.set_rng_state(states["torch"])


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Stop training at once when a batch's scalar ``loss`` is NaN or infinite (``where``:
    ``"epoch 3, batch 7 of 60"``): a step on it would turn every weight into NaN. The run
    folder keeps the ``last.pt`` and ``best.pt`` of the epochs before, and ``run.json``
    records the failure."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingError(f"the training loss became {value} in {where}; stopped before "
                            "the weights took that step (last.pt and best.pt of the earlier "
                            "epochs are kept): lower --lr, the margin or the regulariser "
                            "weights in a new run (--overwrite or another --out)")
