"""One epoch of frozen-mode training on 45,000 features (the CIFAR-10 training part).

Synthetic 1280-d features with 10 classes stand in for Lite0's (same shapes, same work);
default head and batches (10 classes x 16 images), each miner with the FaceNet loss (pair
miners with the contrastive loss), and the softmax classifier. Validation is not part of
the epoch time.

    ./run python benchmarks/bench_training_epoch.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from deephash.losses import create_loss
from deephash.miners import MINERS, create_miner
from deephash.training.config import TrainingConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import build_model
from deephash.training.sampler import build_sampler
from deephash.training.trainer import TrainingSetup, train_epoch


def main() -> None:
    from common import write_result

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 4500)
    features = (rng.normal(size=(10, 1280))[labels] + 2 * rng.normal(size=(45000, 1280)))
    features = features.astype(np.float32)
    train = np.arange(45000)
    cfg = TrainingConfig()
    rows = []
    loss_for = {"triplets": cfg.loss, "pairs": "contrastive"}
    runs = [(loss_for[create_miner(name, cfg.margin).yields], name) for name in MINERS.names()]
    for loss_name, miner_name in [*runs, ("softmax", "none")]:
        torch.manual_seed(0)
        model = build_model(cfg, 1280, None)
        # softmax uses no miner; the trainer still holds one, never called
        miner = create_miner("semi-hard" if miner_name == "none" else miner_name, cfg.margin)
        loss = create_loss(loss_name, cfg.margin, cfg.distance, cfg.reduction, num_classes=10,
                           embedding_dim=cfg.embedding_dim)
        setup = TrainingSetup(
            model=model, inputs=FeatureInputs(features, features[:, ::-1].copy(), 0),
            loss=loss, miner=miner, labels=labels, train=train, val=train[:10],
            sampler=build_sampler(cfg, labels, 0, miner.tuple_size if loss.uses_miner else None),
            optimizer=torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=cfg.lr),
            epochs=1, device=torch.device("cpu"), eval_distance="cosine")
        scheduler = torch.optim.lr_scheduler.LambdaLR(setup.optimizer, lambda step: 1.0)
        start = time.perf_counter()
        train_epoch(setup, 0, scheduler)
        seconds = time.perf_counter() - start
        rows.append({"loss": loss_name, "miner": miner_name, "epoch_seconds": round(seconds, 2),
                     "batches": len(setup.sampler),
                     "images_per_second": round(45000 / seconds)})
        print(rows[-1], flush=True)
    write_result("training_epoch", {
        "what": "one frozen-mode epoch on 45,000 x 1280 features, default head (1280-512-128) "
                "and images per batch (10 x 16); facenet loss for triplet miners, contrastive "
                "for pair miners, softmax without a miner", "rows": rows})


if __name__ == "__main__":
    main()
