"""The epoch driver every training procedure shares (:func:`run_epochs`).

A procedure (:class:`Procedure`: the triplet trainer's epoch of mined batches, Zhuang et
al.'s stage of code inference and bit learning) plugs in one epoch's work; the driver
owns the rest: the loop over ``setup.epochs``, validation (every
``setup.validate_every``-th epoch and the last; the others record NaN), ``history``,
``best.pt`` (the highest validation mAP@all, the first such epoch on ties) and
``last.pt`` with everything ``--resume`` needs: the optimizer, the procedure's own state
(the learning-rate schedule, Zhuang's random generator), the random generators of the
miner, the inputs and torch, and the history. Under torchrun rank 0 alone writes.

Each epoch's record keeps its training time on two clocks, wall-clock and CPU time
(:mod:`deephash.training.clock` says what is counted and why CPU time is the one that other
jobs on the machine barely move), and the machine's 1-minute load average at the end of
its training (:mod:`deephash.machine`). :func:`epoch_steps` yields after each epoch, so that
several runs can take turns (:mod:`deephash.training.rounds`); it restores torch's global
random state (dropout's) of its own run when it continues.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from deephash.distributed import barrier, ranks
from deephash.errors import TrainingError
from deephash.machine import load_sample
from deephash.training.clock import Stopwatch
from deephash.training.evaluation import validate
from deephash.training.rounds import finish
from deephash.training.setup import TrainingSetup

log = logging.getLogger(__name__)

#: ``save(path, extra)`` writes a checkpoint of the model with ``extra``
Save = Callable[[Path, dict[str, Any]], None]


@dataclass
class EpochRecord:
    """One line of ``history.json``. ``*_seconds`` are wall-clock, ``*_cpu_seconds`` CPU
    time (``nan`` in a history written before deephash kept it); ``load_average`` is the
    machine's 1-minute load average when the epoch's training ended;
    ``train_cpu_wait_seconds`` how long the training's threads waited for a core
    (:func:`deephash.training.clock.cpu_wait_seconds`)."""

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
    train_cpu_seconds: float = math.nan
    elapsed_cpu_seconds: float = math.nan
    load_average: float = math.nan
    train_cpu_wait_seconds: float = math.nan


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
    return finish(epoch_steps(setup, procedure, run, save, resume_state))


def epoch_steps(setup: TrainingSetup, procedure: Procedure, run: Path, save: Save,
                resume_state: dict[str, Any] | None = None
                ) -> Generator[EpochRecord, None, list[EpochRecord]]:
    """:func:`run_epochs`, yielding each epoch's record once its checkpoints are written."""
    history: list[EpochRecord] = []
    best, start_epoch, elapsed, elapsed_cpu = -1.0, 0, 0.0, 0.0
    if resume_state is not None:
        setup.optimizer.load_state_dict(resume_state["optimizer"])
        procedure.load_state_dict(resume_state)
        history = [EpochRecord(**h) for h in resume_state["history"]]
        best, start_epoch = resume_state["best_val_map"], resume_state["epoch"] + 1
        elapsed = history[-1].elapsed_seconds if history else 0.0
        elapsed_cpu = history[-1].elapsed_cpu_seconds if history else 0.0
        _set_generator_states(setup, resume_state["generators"])
        log.info("resuming after %s %d (best validation mAP %.4f)", procedure.unit,
                 start_epoch, best)
    procedure.start()
    if not ranks().main:
        save = _no_save
    for epoch in range(start_epoch, setup.epochs):
        clock = Stopwatch()
        stats = procedure.train(epoch)
        trained, load = clock.read(), load_sample()
        due = (epoch + 1) % setup.validate_every == 0 or epoch == setup.epochs - 1
        val_map, val_knn = validate(setup) if due else (math.nan, math.nan)
        lap = clock.read()
        elapsed, elapsed_cpu = elapsed + lap.wall, elapsed_cpu + lap.cpu
        record = EpochRecord(epoch, stats.loss, stats.active_fraction,
                             stats.mean_positive_distance, stats.mean_negative_distance,
                             stats.embedding_norm, stats.triplets_per_batch,
                             stats.empty_batches, trained.wall, val_map, val_knn, elapsed,
                             stats.margin, stats.regularization, trained.cpu, elapsed_cpu, load,
                             trained.wait)
        history.append(record)
        log.info("%s%s (%.1f s, CPU %.1f s)", stats.summary, validation_note(val_map, val_knn),
                 trained.wall, trained.cpu)
        if due and val_map > best:
            best = val_map
            save(run / "best.pt", {"epoch": epoch, "val_map": val_map})
        save(run / "last.pt", {
            "epoch": epoch, "best_val_map": best, "optimizer": setup.optimizer.state_dict(),
            **procedure.state_dict(), "history": [asdict(h) for h in history],
            "generators": _generator_states(setup)})
        paused = _global_random_states()
        yield record
        _set_global_random_states(paused)  # other runs may have drawn in between
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


def _global_random_states() -> list[torch.Tensor]:
    """torch's global generators: the CPU's, and every CUDA device's once CUDA is in use."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_initialized():
        states.extend(torch.cuda.get_rng_state_all())
    return states


def _set_global_random_states(states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if len(states) > 1:
        torch.cuda.set_rng_state_all(states[1:])


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


def validation_note(val_map: float, val_knn: float) -> str:
    """``", val mAP 0.8123, val 10-NN 0.9012"`` for the epoch log; the 10-NN part only where
    the labels define it (single-label data), nothing for an epoch without validation."""
    if math.isnan(val_map):
        return ""
    knn = "" if math.isnan(val_knn) else f", val 10-NN {val_knn:.4f}"
    return f", val mAP {val_map:.4f}{knn}"
