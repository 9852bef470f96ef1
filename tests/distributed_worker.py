"""A few training steps in one process, or as one of several ranks (WORLD_SIZE, RANK,
MASTER_ADDR, MASTER_PORT set as torchrun sets them): ``python distributed_worker.py CASE
OUT [die-after-epoch-0 | resume]`` writes the trained parameters and the validation
history to ``OUT.rank<r>.pt`` (checkpoints beside ``OUT``); ``die-after-epoch-0``: rank 0
exits abruptly once epoch 0's ``last.pt`` is written; ``resume``: continue from it.

Used by tests/test_distributed.py: the ranks' parameters must equal one process's on the
same global batches.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deephash.distributed import broadcast, init_from_environment, ranks
from deephash.features.cache import FeatureCache, FeatureKey
from deephash.losses import create_loss
from deephash.miners import create_miner
from deephash.studies.train import load_trained
from deephash.training.head import EmbeddingHead
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.trainer import TrainingSetup, fit

#: case -> (loss, miner, regularisers, a trainable "backbone" before the head)
CASES = {
    "facenet": ("facenet", "random-hard", {"quantization": 0.05}, True),
    "softmax": ("softmax", "batch-all", {}, False),
}


def make_setup(case: str, seed: int = 0) -> TrainingSetup:
    """Four noisy classes of 16-dim features, a BatchNorm head, P x K = 4 x 6."""
    loss_name, miner_name, regularizers, with_backbone = CASES[case]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 30)
    x = (rng.normal(size=(4, 16))[labels] + rng.normal(size=(120, 16))).astype(np.float32)
    train, val = np.arange(0, 120, 5), np.setdiff1d(np.arange(120), np.arange(0, 120, 5))
    train, val = val, train  # 96 training images, 24 validation queries
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(16, 16), nn.ReLU()) if with_backbone else None
    head = EmbeddingHead(16, (32,), 8, True, 0.0, "none")
    model = EmbeddingModel(head, backbone)  # type: ignore[arg-type]
    model.head.set_feature_statistics(torch.from_numpy(x[train]))
    loss = create_loss(loss_name, 0.3, num_classes=4, embedding_dim=8)
    groups = [{"params": model.head.parameters(), "lr": 5e-3}]
    if backbone is not None:
        groups.append({"params": backbone.parameters(), "lr": 1e-3})
    if any(True for _ in loss.parameters()):
        groups.append({"params": loss.parameters(), "lr": 5e-3})
    return TrainingSetup(
        model=model, inputs=FeatureInputs(x, -x, seed), loss=loss,
        miner=create_miner(miner_name, 0.3, seed),
        sampler=BalancedBatchSampler(labels[train], 4, 6, seed, batches_per_epoch=3),
        labels=labels, train=train, val=val, optimizer=torch.optim.Adam(groups),
        epochs=2, device=torch.device("cpu"), eval_distance="cosine",
        regularizers=dict(regularizers))


def train(case: str, run: Path, mode: str = "") -> dict[str, object]:
    """Two epochs of three steps; the parameters, the loss's own, and the history."""
    init_from_environment(torch.device("cpu"))
    setup = make_setup(case)
    state = None
    if mode == "resume":  # as deephash train --resume: rank 0 reads, every rank loads
        state = broadcast(torch.load(run / "last.pt", weights_only=False) if ranks().main
                          else None)
        load_trained(setup, state)

    def save(path: Path, extra: dict[str, Any]) -> None:
        torch.save({"model": setup.model.state_dict(), "loss": setup.loss.state_dict(),
                    **extra}, path)
        if mode == "die-after-epoch-0" and path.name == "last.pt" and extra["epoch"] == 0:
            os._exit(3)  # killed

    history = fit(setup, run, save, resume_state=state)
    return {"model": setup.model.state_dict(), "loss": setup.loss.state_dict(),
            "history": [(h.loss, h.val_map, h.val_knn) for h in history],
            "world": ranks().world}


def cache_shares(run: Path) -> dict[str, object]:
    """A 10-image feature cache entry in shards of 4: which rows this rank computed, and
    the entry every rank reads back."""
    init_from_environment(torch.device("cpu"))
    key = FeatureKey(backbone="b", weights="w", transform={}, dataset="d", n_images=10, dim=3)
    computed: list[list[int]] = []

    def compute(indices: np.ndarray, views: tuple[str, ...]) -> dict[str, np.ndarray]:
        computed.append(indices.tolist())
        return {view: np.repeat(indices[:, None], 3, axis=1).astype(np.float32)
                for view in views}

    features = FeatureCache(run / "cache", shard_size=4).get_or_compute_views(
        {"identity": key}, compute)["identity"]
    return {"computed": computed, "features": np.array(features),
            "shards_left": (FeatureCache(run / "cache").entry(key) / "shards").exists()}


if __name__ == "__main__":
    name, out = sys.argv[1], Path(sys.argv[2])
    result = (cache_shares(out.parent) if name == "cache"
              else train(name, out.parent, sys.argv[3] if len(sys.argv) > 3 else ""))
    torch.save(result, f"{out}.rank{ranks().rank}.pt")
