"""One training loop for both modes (frozen features, finetuned backbone).

Per batch: embeddings -> ``loss.compute`` (for the metric losses: the distance matrix ->
the miner's triplets or pairs, on detached distances -> the loss; the softmax loss
classifies the embeddings). Per epoch: diagnostics (loss, fraction of active triplets, mean
anchor-positive and anchor-negative distances, embedding norm, empty batches) and the
validation score (validation queries against the training part); the best epoch on
validation is kept as ``best.pt``, every epoch as ``last.pt`` (for ``--resume``).

Under torchrun (:mod:`deephash.distributed`) each rank embeds its share of every global
batch through the DDP-wrapped model, the loss sees the gathered global batch, evaluation
embeddings are split between the ranks, rank 0 scores validation and alone writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from deephash.distances import Distance, as_distance
from deephash.distributed import (
    ONE_PROCESS,
    Ranks,
    barrier,
    broadcast,
    check_batch,
    data_parallel,
    gather_batch,
    gather_rows,
    ranks,
)
from deephash.errors import ConfigError
from deephash.hashing.regularizers import get_regularizer
from deephash.losses import BatchLoss
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.miners import Miner
from deephash.progress import progress_bar
from deephash.training.model import EmbeddingModel
from deephash.training.sampler import BatchSampler
from deephash.training.schedules import Schedule

log = logging.getLogger(__name__)

VALIDATION_SPEC = EvaluationSpec(knn_k=(10,), map_cutoffs=(), precision_k=())


class Inputs(Protocol):
    in_dim: int

    def train_batches(self, batches: list[np.ndarray], part: Ranks = ONE_PROCESS) -> Any: ...

    def eval_batches(self, indices: np.ndarray, batch_size: int, mirrored: bool = False
                     ) -> Any: ...


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
class TrainingSetup:
    """Everything the loop needs; built by :mod:`deephash.studies.train`."""

    model: EmbeddingModel
    inputs: Inputs
    loss: BatchLoss
    miner: Miner
    sampler: BatchSampler
    labels: np.ndarray          # (N_pool,) int64
    train: np.ndarray           # pool indices the sampler's positions refer to
    val: np.ndarray             # pool indices of validation queries
    optimizer: torch.optim.Optimizer
    epochs: int
    device: torch.device
    eval_distance: str  # euclidean, sqeuclidean, cosine, or hamming (sign codes)
    eval_batch_size: int = 1024
    regularizers: dict[str, float] = field(default_factory=dict)  # name -> weight
    schedules: dict[str, Schedule] = field(default_factory=dict)  # "margin" or a regulariser
    test_time_flip: bool = False  # evaluate on the mean of image and mirror-image embeddings
    validate_every: int = 1  # epochs between validations (and after the last)


@torch.no_grad()
def embed(model: EmbeddingModel, inputs: Inputs, indices: np.ndarray, device: torch.device,
          batch_size: int = 1024, test_time_flip: bool = False) -> np.ndarray:
    """``(len(indices), embedding_dim)`` float32 embeddings in eval mode.

    ``test_time_flip``: the mean of each image's embedding and its mirror image's (for codes,
    the mean of the relaxed outputs, binarised afterwards). Across ranks, each embeds its
    share of ``indices`` and every rank gets them all (every rank must call).
    """
    group = ranks()
    mine = _embed_local(model, inputs, group.take(indices), device, batch_size, test_time_flip)
    return gather_rows(mine, len(indices))


def _embed_local(model: EmbeddingModel, inputs: Inputs, indices: np.ndarray,
                 device: torch.device, batch_size: int, test_time_flip: bool) -> np.ndarray:
    model.eval()
    views = (False, True) if test_time_flip else (False,)
    total = None
    for mirrored in views:
        parts = [model(x.to(device)).float().cpu()
                 for x in inputs.eval_batches(indices, batch_size, mirrored=mirrored)]
        vectors = torch.cat(parts) if parts else torch.zeros((0, model.head.out_dim))
        total = vectors if total is None else total + vectors
    assert total is not None
    return (total / len(views)).numpy()


def validation_scores(val: np.ndarray, train: np.ndarray, val_labels: np.ndarray,
                      train_labels: np.ndarray,
                      distance: str | Distance) -> tuple[float, float]:
    """(mAP@all, kNN@10) of ``(V, D)`` validation vectors against ``(T, D)`` training
    vectors; a binary distance (``hamming``) scores the vectors' sign codes."""
    metric = as_distance(distance)
    if metric.binary:  # hashing is scored on the sign codes
        codes = evaluate_codes(metric.codes(val), metric.codes(train),
                               val_labels, train_labels, val.shape[1], VALIDATION_SPEC)
        return codes.metrics["map@all"], codes.metrics["knn_acc@10"]
    report = evaluate_retrieval(val, train, val_labels, train_labels, metric.name,
                                VALIDATION_SPEC)
    return report.metrics["map@all"], report.metrics["knn_acc@10"]


def validate(setup: TrainingSetup) -> tuple[float, float]:
    """(mAP@all, kNN@10) of validation queries against the training part (scored by rank
    0, the same figures on every rank)."""
    both = np.concatenate([setup.val, setup.train])
    vectors = embed(setup.model, setup.inputs, both, setup.device, setup.eval_batch_size,
                    setup.test_time_flip)
    scores = None
    if ranks().main:
        scores = validation_scores(vectors[: len(setup.val)], vectors[len(setup.val):],
                                   setup.labels[setup.val], setup.labels[setup.train],
                                   setup.eval_distance)
    return broadcast(scores)


def apply_schedules(setup: TrainingSetup, epoch: int) -> None:
    """Set this epoch's margin (loss and miner) and regulariser weights."""
    fraction = epoch / max(setup.epochs - 1, 1)
    for name, schedule in setup.schedules.items():
        value = schedule.value(epoch, fraction, setup.epochs)
        if name == "margin":
            if not hasattr(setup.loss, "margin"):
                raise ConfigError(f"loss {setup.loss.name!r} has no margin to schedule")
            for owner in (setup.loss, setup.miner):
                if hasattr(owner, "margin"):
                    owner.margin = value
        else:
            get_regularizer(name)  # validates the name
            setup.regularizers[name] = value


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda")


def train_epoch(setup: TrainingSetup, epoch: int,
                scheduler: torch.optim.lr_scheduler.LRScheduler,
                model: torch.nn.Module | None = None) -> dict[str, float]:
    """One epoch; returns the mean diagnostics over batches that had triplets.

    ``model``: what runs the forward pass (``setup.model`` or its DDP wrapper). Each batch
    is global: this rank embeds its share, the loss sees all of it (:func:`gather_batch`).
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
        labels = torch.from_numpy(setup.labels[indices]).to(setup.device)
        with _autocast(setup.device):
            local = model(x.to(setup.device, non_blocking=True))
        embeddings = gather_batch(local.float())
        out = setup.loss.compute(embeddings, labels, setup.miner)
        regularization = sum((setup.regularizers[name] * term(embeddings)
                              for name, term in terms.items()), torch.zeros(()))
        setup.optimizer.zero_grad(set_to_none=True)
        (out.loss + regularization).backward()
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


def fit(setup: TrainingSetup, run: Path, save: Callable[[Path, dict[str, Any]], None],
        resume_state: dict[str, Any] | None = None) -> list[EpochRecord]:
    """Train for ``setup.epochs``; ``save(path, extra)`` writes a checkpoint.

    Returns the per-epoch history. ``best.pt`` holds the epoch with the highest validation
    mAP@all (the first such epoch on ties) among the validated ones (every
    ``setup.validate_every``-th and the last; the others record NaN).
    """
    check_batch(setup.sampler.batch_size)
    total_steps = setup.epochs * len(setup.sampler)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        setup.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps)
                                                         / max(total_steps, 1))))
    history: list[EpochRecord] = []
    best, start_epoch, elapsed = -1.0, 0, 0.0
    if resume_state is not None:
        setup.optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        history = [EpochRecord(**h) for h in resume_state["history"]]
        best, start_epoch = resume_state["best_val_map"], resume_state["epoch"] + 1
        elapsed = history[-1].elapsed_seconds if history else 0.0
        _set_generator_states(setup, resume_state["generators"])
        log.info("resuming after epoch %d (best validation mAP %.4f)", start_epoch, best)
    trained = _parallel(setup)
    if not ranks().main:
        save = _no_save
    for epoch in range(start_epoch, setup.epochs):
        started = time.perf_counter()
        stats = train_epoch(setup, epoch, scheduler, trained)
        train_seconds = time.perf_counter() - started
        due = (epoch + 1) % setup.validate_every == 0 or epoch == setup.epochs - 1
        val_map, val_knn = validate(setup) if due else (math.nan, math.nan)
        elapsed += time.perf_counter() - started
        record = EpochRecord(epoch, stats["loss"], stats["active"], stats["pos"], stats["neg"],
                             stats["norm"], stats["items"], int(stats["empty"]), train_seconds,
                             val_map, val_knn, elapsed,
                             float(getattr(setup.loss, "margin", math.nan)), stats["reg"])
        history.append(record)
        log.info("epoch %d/%d: loss %.4f, active %.3f, d+ %.3f, d- %.3f, val mAP %.4f, "
                 "val 10-NN %.4f (%.1f s)", epoch + 1, setup.epochs, record.loss,
                 record.active_fraction, record.mean_positive_distance,
                 record.mean_negative_distance, val_map, val_knn, train_seconds)
        if due and val_map > best:
            best = val_map
            save(run / "best.pt", {"epoch": epoch, "val_map": val_map})
        save(run / "last.pt", {
            "epoch": epoch, "best_val_map": best, "optimizer": setup.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "history": [asdict(h) for h in history],
            "generators": _generator_states(setup)})
    barrier()  # rank 0's checkpoints are written
    return history


def _no_save(path: Path, extra: dict[str, Any]) -> None:
    """Ranks other than 0 write nothing."""


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
