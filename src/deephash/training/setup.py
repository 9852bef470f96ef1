"""What a training procedure trains: :class:`TrainingSetup` (built by
:mod:`deephash.pipeline.setup`), and the :class:`Inputs` its batches come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from deephash.distributed import ONE_PROCESS, Ranks
from deephash.labels import LabelSet, as_label_set
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
    trainer hands it to the miner at mining time and a ``"margin"`` schedule sets it there.

    ``labels`` are the pool's label set; ``(N,)`` class ids or an ``(N, C)`` multi-hot
    matrix are read into one (:func:`~deephash.labels.as_label_set`)."""

    model: EmbeddingModel
    inputs: Inputs
    loss: BatchLoss
    miner: Miner
    sampler: BatchSampler
    labels: LabelSet            # the pool's (N_pool,) ids or (N_pool, C) multi-hot labels
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

    def __post_init__(self) -> None:
        self.labels = as_label_set(self.labels)

    def batch_labels(self, indices: np.ndarray) -> torch.Tensor:
        """The labels of pool ``indices`` on the device, in the data set's form for every
        batch: ``(B,)`` int64 ids (single-label) or ``(B, C)`` bool rows (multi-label; even
        when the batch's images happen to have one label each, so that the classifier's
        loss is the same for every batch)."""
        rows = self.labels.ids if self.labels.is_single else self.labels.multi_hot
        return torch.from_numpy(rows[indices]).to(self.device)
