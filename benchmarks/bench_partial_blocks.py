"""Partial finetuning's cost against N, the trainable last blocks of EfficientNet-Lite0.

For N = 0 (the frozen head) to 5, and for full finetuning (the whole backbone from
128-px images): one training step (forward, loss, backward, Adam) on a batch of 10 x 16
cached activations (images) at 128 px, with the bits sweep's head (2048 wide, 48
outputs) and loss (FaceNet, random-hard, cosine); the steps of each N are interleaved in
rounds, so load on the machine falls on all of them alike, and the median per N is
reported with its ratio to N = 0. Also: the activations' width (what the cache stores per
image and view) and an epoch's estimate on the `cifar10` protocol (281 steps).

    ./run python benchmarks/bench_partial_blocks.py
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.backbones.split import split_backbone
from deephash.losses import create_loss
from deephash.miners import create_miner
from deephash.training.config import TrainingConfig
from deephash.training.model import build_model
from deephash.training.optimizer import build_optimizer
from deephash.training.trainer import batch_loss

BLOCKS: tuple[int | str, ...] = (0, 1, 2, 3, 4, 5, "finetune")
ROUNDS, STEPS = 5, 3
CIFAR10_STEPS = 281


def main() -> None:
    from common import write_result

    cfg = TrainingConfig(mode="partial", hidden_dims=(2048,), embedding_dim=48, margin=0.3,
                         distance="cosine", miner="random-hard")
    labels = torch.from_numpy(np.repeat(np.arange(10), 16))
    steps = {}
    for n in BLOCKS:
        torch.manual_seed(0)
        backbone = create_backbone("efficientnet_lite0")
        if n == "finetune":
            model = build_model(dataclasses.replace(cfg, mode="finetune"), 1280, backbone)
            x, width = torch.randn(160, 3, 128, 128), 3 * 128 * 128
        else:
            prefix, suffix = split_backbone(backbone, int(n), 128)
            model = build_model(cfg, 1280, suffix)
            x = torch.randn(160, prefix.num_features).clamp_min(0)  # post-activation-like
            width = prefix.num_features
        loss = create_loss("facenet", cfg.margin, cfg.distance)
        miner = create_miner("random-hard", cfg.margin, 0)
        optimizer = build_optimizer(cfg, model, loss)
        steps[n] = (model, loss, miner, optimizer, x, width)

    def step(n: int | str) -> float:
        model, loss, miner, optimizer, x, _ = steps[n]
        model.train()
        start = time.perf_counter()
        out = batch_loss(loss, miner, model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for n in BLOCKS:  # warm-up
        step(n)
    seconds: dict[int | str, list[float]] = {n: [] for n in BLOCKS}
    for _ in range(ROUNDS):
        for n in BLOCKS:
            seconds[n].extend(step(n) for _ in range(STEPS))
    base = statistics.median(seconds[0])
    rows = []
    for n in BLOCKS:
        median = statistics.median(seconds[n])
        rows.append({"trainable_blocks": n, "step_seconds": round(median, 4),
                     "ratio_to_frozen": round(median / base, 1),
                     "cifar10_epoch_seconds": round(median * CIFAR10_STEPS, 1),
                     "cached_floats_per_image": steps[n][5],
                     "trainable_parameters": sum(p.numel() for p in steps[n][0].parameters())})
        print(rows[-1], flush=True)
    write_result("partial_blocks", {
        "what": "one partial-mode training step (10 x 16 activations at 128 px, head 2048 "
                "wide, 48 outputs, facenet + random-hard, cosine, Adam) against the number "
                "of trainable last blocks of efficientnet_lite0, and one finetune step (the "
                "whole backbone from 128-px images; cached_floats_per_image: the image); "
                "medians of "
                f"{ROUNDS} interleaved rounds of {STEPS} steps", "rows": rows})


if __name__ == "__main__":
    main()
