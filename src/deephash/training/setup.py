"""What a training procedure trains: :class:`TrainingSetup` (built by
:mod:`deephash.pipeline.setup`), and the :class:`Inputs` its batches come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from deephash.distributed import ONE_PROCESS, Ranks
from deephash.losses import BatchLoss
from deephash.miners import Miner
from deephash.training.model import EmbeddingModel
from deephash.training.sampler import BatchSampler
from deephash.training.schedules import Schedule


class Inputs(Protocol):
    in_dim: int

    def train_batches(self, batches: list[np.ndarray], part: Ranks = ONE_PROCESS) -> Any: ...

    def eval_batches(self, indices: np.ndarray, batch_size: int, mirrored: bool = False
                     ) -> Any: ...


@dataclass
class TrainingSetup:
    """Everything the loop needs. The margin lives once, on the loss (``loss.margin``): the
    trainer hands it to the miner at mining time and a ``"margin"`` schedule sets it there."""

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
