"""The training loop of Zhuang et al.'s two-step hashing (see :mod:`deephash.hashing.zhuang`).

Each *stage* (one ``epochs`` unit) samples fresh triplets of training images, infers
their binary codes starting from the network's current ones, and then trains the head
for ``epochs_per_stage`` passes to predict those bits (sigmoid cross-entropy on its
logits). Validation, checkpoints and history work as in the triplet trainer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deephash.errors import ConfigError
from deephash.hashing.zhuang import bit_targets, infer_codes, sample_triplets
from deephash.progress import progress_bar
from deephash.training.config import ZhuangConfig
from deephash.training.trainer import EpochRecord, TrainingSetup, embed, validate

log = logging.getLogger(__name__)


def fit_zhuang(setup: TrainingSetup, cfg: ZhuangConfig, margin: float, seed: int, run: Path,
               save: Callable[[Path, dict[str, Any]], None],
               resume_state: dict[str, Any] | None = None) -> list[EpochRecord]:
    """Alternate code inference and bit prediction for ``setup.epochs`` stages."""
    if resume_state is not None:
        raise ConfigError("--resume is not supported for the zhuang method; rerun the stages")
    if setup.model.backbone is not None:
        raise ConfigError("the zhuang method trains a head on frozen features (--mode frozen)")
    rng = np.random.default_rng(seed)
    labels = setup.labels[setup.train]
    history: list[EpochRecord] = []
    best, elapsed = -1.0, 0.0
    for stage in range(setup.epochs):
        started = time.perf_counter()
        logits = embed(setup.model, setup.inputs, setup.train, setup.device)
        current = np.where(logits >= 0, 1, -1).astype(np.int8)
        triplets = sample_triplets(labels, cfg.triplets_per_image, rng)
        codes, objective = infer_codes(current, triplets, margin, cfg.sweeps, cfg.block_size,
                                       rng)
        bce = _learn_bits(setup, bit_targets(codes), cfg.epochs_per_stage, rng, stage)
        train_seconds = time.perf_counter() - started
        val_map, val_knn = validate(setup)
        elapsed += time.perf_counter() - started
        a, p, n = (codes[triplets[:, i]] for i in range(3))
        d_ap, d_an = (a != p).sum(1), (a != n).sum(1)
        record = EpochRecord(stage, bce, float(np.mean(margin + d_ap - d_an > 0)),
                             float(d_ap.mean()), float(d_an.mean()),
                             float(np.abs(logits).mean()), float(len(triplets)), 0,
                             train_seconds, val_map, val_knn, elapsed, margin,
                             objective[-1] / max(len(triplets), 1))
        history.append(record)
        log.info("stage %d/%d: code objective %.0f -> %.0f, bit loss %.4f, val mAP %.4f "
                 "(%.1f s)", stage + 1, setup.epochs, objective[0], objective[-1], bce,
                 val_map, train_seconds)
        if val_map > best:
            best = val_map
            save(run / "best.pt", {"epoch": stage, "val_map": val_map})
        save(run / "last.pt", {"epoch": stage, "best_val_map": best,
                               "history": [asdict(h) for h in history]})
    return history


def _learn_bits(setup: TrainingSetup, targets: torch.Tensor, epochs: int,
                rng: np.random.Generator, stage: int) -> float:
    """Train the head to predict ``(N_train, K)`` 0/1 targets; returns the last epoch's
    mean loss."""
    model, batch = setup.model, setup.sampler.batch_size
    model.train()
    mean = math.nan
    bar = progress_bar(epochs * math.ceil(len(setup.train) / batch), f"stage {stage + 1} bits",
                       unit="batch")
    for _ in range(epochs):
        order = rng.permutation(len(setup.train))
        batches = [order[s:s + batch] for s in range(0, len(order), batch)]
        total = 0.0
        for positions, x in zip(batches, setup.inputs.train_batches(
                [setup.train[b] for b in batches]), strict=True):
            logits = model(x.to(setup.device))
            loss = F.binary_cross_entropy_with_logits(
                logits, targets[torch.from_numpy(positions)].to(setup.device))
            setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            setup.optimizer.step()
            total += loss.item() * len(positions)
            bar.update(1)
        mean = total / len(setup.train)
    bar.close()
    return mean
