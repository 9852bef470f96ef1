"""The triplet procedure: per batch, the trainer mines and the loss scores the tuples.

Per batch (:func:`~deephash.losses.base.batch_loss`, re-exported here): embeddings -> the
loss's differentiable distance matrix -> the miner's triplets or pairs, mined on its
detached copy with the loss's margin -> the loss (the softmax loss, which mines nothing,
classifies the embeddings). Per epoch (:func:`train_epoch`): this epoch's scheduled
margin and regulariser weights, and diagnostics (loss, fraction of active triplets, mean
anchor-positive and anchor-negative distances, embedding norm, empty batches). :func:`fit`
runs the epochs through the shared driver (:func:`deephash.training.epochs.run_epochs`:
validation, ``best.pt``, ``last.pt``, ``--resume``) with a cosine learning-rate schedule
over all steps.

Under torchrun (:mod:`deephash.distributed`) each rank embeds its share of every global
batch through the DDP-wrapped model; the miner and the loss see the gathered global batch
on every rank; evaluation embeddings are split between the ranks, rank 0 scores
validation and alone writes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from deephash.distributed import check_batch, data_parallel, gather_batch, ranks
from deephash.errors import ConfigError
from deephash.hashing.regularizers import get_regularizer
from deephash.losses import BatchLoss, batch_loss
from deephash.progress import progress_bar
from deephash.training.epochs import EpochRecord, EpochStats, Save, check_finite, epoch_steps
from deephash.training.evaluation import embed, validate, validation_scores
from deephash.training.rounds import Steps, finish
from deephash.training.setup import Inputs, TrainingSetup

__all__ = ["EpochRecord", "Inputs", "TrainingSetup", "apply_schedules", "batch_loss", "embed",
           "fit", "fit_steps", "train_epoch", "validate", "validation_scores"]

def apply_schedules(setup: TrainingSetup, epoch: int) -> None:
    """Set this epoch's margin (the loss's, the one the miner mines with) and regulariser
    weights."""
    fraction = epoch / max(setup.epochs - 1, 1)
    for name, schedule in setup.schedules.items():
        value = schedule.value(epoch, fraction, setup.epochs)
        if name == "margin":
            owner = _margin_owner(setup.loss)
            if owner is None:
                raise ConfigError(f"loss {setup.loss.name!r} has no margin to schedule")
            owner.margin = value
        else:
            get_regularizer(name)  # validates the name
            setup.regularizers[name] = value


def _margin_owner(loss: BatchLoss) -> BatchLoss | None:
    """The loss, if its formula has a margin (``loss.margin``: a metric loss's, DSH's), the
    one to schedule and record."""
    return loss if loss.uses_margin else None


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda")


def train_epoch(setup: TrainingSetup, epoch: int,
                scheduler: torch.optim.lr_scheduler.LRScheduler,
                model: torch.nn.Module | None = None) -> dict[str, float]:
    """One epoch; returns the mean diagnostics over batches that had triplets.

    ``model``: what runs the forward pass (``setup.model`` or its DDP wrapper). Each batch
    is global: this rank embeds its share; the miner and the loss see all of it, gathered
    (:func:`gather_batch`), on every rank.
    """
    model = setup.model if model is None else model
    sampler, part = setup.sampler, ranks()
    apply_schedules(setup, epoch)
    terms = {name: get_regularizer(name) for name in setup.regularizers}
    model.train()
    batches = [setup.train[positions] for positions in sampler.epoch(epoch)]
    sums = dict.fromkeys(("loss", "active", "pos", "neg", "norm", "items", "reg"), 0.0)
    useful, empty = 0, 0
    bar = progress_bar(len(batches), f"epoch {epoch + 1}/{setup.epochs}", unit="batch")
    for step, (indices, x) in enumerate(zip(batches, setup.inputs.train_batches(batches, part),
                                            strict=True)):
        setup.miner.set_progress((epoch + step / len(batches)) / setup.epochs)
        labels = setup.batch_labels(indices)
        with _autocast(setup.device):
            local = model(x.to(setup.device, non_blocking=True))
        embeddings = gather_batch(local.float())
        out = batch_loss(setup.loss, setup.miner, embeddings, labels)  # the global batch
        regularization = sum((setup.regularizers[name] * term(embeddings)
                              for name, term in terms.items()), torch.zeros(()))
        total = out.loss + regularization
        check_finite(total, f"epoch {epoch + 1}, batch {step + 1} of {len(batches)}")
        setup.optimizer.zero_grad(set_to_none=True)
        total.backward()
        setup.optimizer.step()
        scheduler.step()
        bar.update(1)
        if out.n_items == 0:
            empty += 1
            continue
        useful += 1
        for key, value in (("loss", out.loss.item()), ("active", out.active_fraction),
                           ("pos", out.mean_positive_distance),
                           ("neg", out.mean_negative_distance),
                           ("norm", float(embeddings.detach().norm(dim=1).mean())),
                           ("items", out.n_items), ("reg", float(regularization.detach()))):
            sums[key] += value
    bar.close()
    means = {k: (v / useful if useful else math.nan) for k, v in sums.items()}
    means["empty"] = empty
    return means


def fit(setup: TrainingSetup, run: Path, save: Save,
        resume_state: dict[str, Any] | None = None) -> list[EpochRecord]:
    """Train for ``setup.epochs`` (the rest of them after ``resume_state``, a ``last.pt``);
    ``save(path, extra)`` writes a checkpoint. Returns the per-epoch history; ``best.pt``
    and ``last.pt`` as :func:`~deephash.training.epochs.run_epochs` writes them."""
    return finish(fit_steps(setup, run, save, resume_state))


def fit_steps(setup: TrainingSetup, run: Path, save: Save,
              resume_state: dict[str, Any] | None = None) -> Steps[list[EpochRecord]]:
    """:func:`fit`, yielding after each epoch (:mod:`deephash.training.rounds`)."""
    check_batch(setup.sampler.batch_size)
    return epoch_steps(setup, TripletProcedure(setup), run, save, resume_state)


class TripletProcedure:
    """The triplet trainer's epochs (:func:`train_epoch`) under a cosine learning-rate
    schedule over all steps; trains the DDP wrapper of the model across ranks."""

    unit = "epoch"

    def __init__(self, setup: TrainingSetup) -> None:
        self.setup = setup
        total_steps = setup.epochs * len(setup.sampler)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            setup.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps)
                                                             / max(total_steps, 1))))
        self.trained: torch.nn.Module = setup.model

    def start(self) -> None:
        self.trained = _parallel(self.setup)

    def train(self, epoch: int) -> EpochStats:
        setup = self.setup
        means = train_epoch(setup, epoch, self.scheduler, self.trained)
        owner = _margin_owner(setup.loss)
        margin = math.nan if owner is None else owner.margin
        return EpochStats(
            means["loss"], means["active"], means["pos"], means["neg"], means["norm"],
            means["items"], int(means["empty"]), margin, means["reg"],
            f"epoch {epoch + 1}/{setup.epochs}: loss {means['loss']:.4f}, active "
            f"{means['active']:.3f}, d+ {means['pos']:.3f}, d- {means['neg']:.3f}")

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])


def _parallel(setup: TrainingSetup) -> torch.nn.Module:
    """The model that trains: ``setup.model`` itself, or across ranks its DDP wrapper; then
    each rank's torch generator (dropout, image augmentation) goes its own seeded way."""
    group = ranks()
    if group.world == 1:
        return setup.model
    trained = data_parallel(setup.model, setup.device)
    shared = int(torch.randint(2**62, (), generator=None))  # the same draw on every rank
    torch.manual_seed(shared + group.rank)
    return trained
