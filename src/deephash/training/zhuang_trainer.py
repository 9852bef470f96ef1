"""The training procedure of Zhuang et al.'s two-step hashing (see :mod:`deephash.hashing.zhuang`).

Each *stage* (one ``epochs`` unit) samples fresh triplets of training images, infers
their binary codes starting from the network's current ones, and then trains the head
for ``epochs_per_stage`` passes to predict those bits (sigmoid cross-entropy on its
logits). The stages run through the epoch driver the triplet trainer uses
(:func:`deephash.training.epochs.run_epochs`): validation, checkpoints, history and
``--resume`` (the stage's random generator is saved in ``last.pt``) work alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deephash.errors import ConfigError
from deephash.hashing.zhuang import bit_targets, infer_codes, sample_triplets
from deephash.progress import progress_bar
from deephash.training.config import ZhuangConfig
from deephash.training.epochs import EpochRecord, EpochStats, Save, check_finite, epoch_steps
from deephash.training.evaluation import embed
from deephash.training.rounds import Steps, finish
from deephash.training.setup import TrainingSetup


def fit_zhuang(setup: TrainingSetup, cfg: ZhuangConfig, margin: float, seed: int, run: Path,
               save: Save, resume_state: dict[str, Any] | None = None) -> list[EpochRecord]:
    """Alternate code inference and bit prediction for ``setup.epochs`` stages (the rest
    of them after ``resume_state``, a ``last.pt``); ``margin`` in bits."""
    return finish(fit_zhuang_steps(setup, cfg, margin, seed, run, save, resume_state))


def fit_zhuang_steps(setup: TrainingSetup, cfg: ZhuangConfig, margin: float, seed: int,
                     run: Path, save: Save, resume_state: dict[str, Any] | None = None
                     ) -> Steps[list[EpochRecord]]:
    """:func:`fit_zhuang`, yielding after each stage (:mod:`deephash.training.rounds`)."""
    if setup.model.backbone is not None:
        raise ConfigError("the zhuang method trains a head on frozen features (--mode frozen)")
    return epoch_steps(setup, ZhuangStages(setup, cfg, margin, seed), run, save, resume_state)


class ZhuangStages:
    """One stage per epoch: code inference on sampled triplets, then bit learning. Its
    random generator (triplets, code inference, batch order) is its resume state."""

    unit = "stage"

    def __init__(self, setup: TrainingSetup, cfg: ZhuangConfig, margin: float,
                 seed: int) -> None:
        self.setup, self.cfg, self.margin = setup, cfg, margin
        self.rng = np.random.default_rng(seed)

    def start(self) -> None:
        """Nothing to prepare (one process, the model itself)."""

    def train(self, stage: int) -> EpochStats:
        setup, cfg, margin, rng = self.setup, self.cfg, self.margin, self.rng
        logits = embed(setup.model, setup.inputs, setup.train, setup.device)
        current = np.where(logits >= 0, 1, -1).astype(np.int8)
        triplets = sample_triplets(setup.labels[setup.train], cfg.triplets_per_image, rng)
        codes, objective = infer_codes(current, triplets, margin, cfg.sweeps, cfg.block_size,
                                       rng)
        bce = _learn_bits(setup, bit_targets(codes), cfg.epochs_per_stage, rng, stage)
        a, p, n = (codes[triplets[:, i]] for i in range(3))
        d_ap, d_an = (a != p).sum(1), (a != n).sum(1)
        return EpochStats(
            bce, float(np.mean(margin + d_ap - d_an > 0)), float(d_ap.mean()),
            float(d_an.mean()), float(np.abs(logits).mean()), float(len(triplets)), 0,
            margin, objective[-1] / max(len(triplets), 1),
            f"stage {stage + 1}/{setup.epochs}: code objective {objective[0]:.0f} -> "
            f"{objective[-1]:.0f}, bit loss {bce:.4f}")

    def state_dict(self) -> dict[str, Any]:
        return {"zhuang_rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["zhuang_rng"]


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
        for step, (positions, x) in enumerate(zip(batches, setup.inputs.train_batches(
                [setup.train[b] for b in batches]), strict=True)):
            logits = model(x.to(setup.device))
            loss = F.binary_cross_entropy_with_logits(
                logits, targets[torch.from_numpy(positions)].to(setup.device))
            check_finite(loss, f"stage {stage + 1}, batch {step + 1} of {len(batches)}")
            setup.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            setup.optimizer.step()
            total += loss.item() * len(positions)
            bar.update(1)
        mean = total / len(setup.train)
    bar.close()
    return mean
