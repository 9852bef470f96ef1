"""A long frozen-mode run, before and after subnormals are flushed (issue 11, point 6):
epoch time at the first and the last epoch, and subnormal counts, side by side.

Synthetic 1280-d features stand in for Lite0's at 32 px: 10 classes, 5,000 training and
1,000 validation items (the size of a 500 + 100 per class CIFAR-10 slice), and 224 of the
1,280 dimensions constant on every image, as Lite0's are at 32 px on that slice (242 on
all of CIFAR-10). Such a dimension enters the head as 0, so its weights get no loss
gradient: the same zero-gradient decay as the weights of a hidden unit whose ReLU never
fires (the issue's 128-px run), in a form that synthetic data produce for certain. The head
and loss are the 48-bit flagship's: 1280-2048-48 tanh codes, FaceNet loss on cosine
distance, random-hard miner, margin 0.4, quantisation 0.01, test-time flip.

Both runs start from the same seed: ``before`` uses plain Adam with the same settings (the
update rule before the fix), ``fixed`` the optimizer that training builds
(:func:`deephash.training.optimizer.build_optimizer`). Afterwards, the product of 8,192
random feature rows with the first weight matrix as ``before`` left it, and with its
subnormals set to 0, shows what this CPU pays for them (Intel cores pay ~26x, AMD little).

    ./run python benchmarks/bench_long_training.py [--epochs 6 --batches 300 --hidden 2048]

One thread by default (``--threads``): on two shared cores a second intra-op thread mostly
waits, and three times slower steps would not fit "a few minutes".
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import torch

from deephash.losses import create_loss
from deephash.miners import create_miner
from deephash.training.config import TrainingConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel, build_model
from deephash.training.optimizer import build_optimizer
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.subnormals import count_subnormals, flush_subnormals_, state_tensors
from deephash.training.trainer import TrainingSetup, fit

DIM, DEAD, CLASSES, TRAIN, VAL = 1280, 224, 10, 5000, 1000


def features(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, DIM)`` features, their mirror-image view, ``(N,)`` labels; ``DEAD`` constant
    dimensions in both views."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), (TRAIN + VAL) // CLASSES)
    x = 0.15 * rng.normal(size=(CLASSES, DIM))[labels] + rng.normal(size=(len(labels), DIM))
    mirror = x + 0.5 * rng.normal(size=x.shape)
    dead = rng.choice(DIM, DEAD, replace=False)
    x[:, dead] = mirror[:, dead] = 0.0
    return x.astype(np.float32), mirror.astype(np.float32), labels


def flagship(epochs: int, hidden: int) -> TrainingConfig:
    """The README's 48-bit command (``hash --loss facenet ...``) as a training config."""
    return TrainingConfig(loss="facenet", miner="random-hard", distance="cosine", margin=0.4,
                          reduction="mean", activation="tanh", normalize=False,
                          regularizers=("quantization=0.01",), codes=True, embedding_dim=48,
                          hidden_dims=(hidden,), epochs=epochs, test_time_flip=True)


def first_weight(model: EmbeddingModel) -> torch.Tensor:
    """``(hidden, DIM)``: the head's first ``Linear`` weight, where the issue found them."""
    layer = model.head.layers[0]
    assert isinstance(layer, torch.nn.Linear)
    return layer.weight


def run(fixed: bool, epochs: int, batches: int, hidden: int, seed: int = 0
        ) -> tuple[dict[str, Any], EmbeddingModel, torch.optim.Optimizer]:
    x, mirror, labels = features(seed)
    order = np.random.default_rng(seed).permutation(len(labels))
    train, val = np.sort(order[VAL:]), np.sort(order[:VAL])
    cfg = flagship(epochs, hidden)
    torch.manual_seed(seed)
    model = build_model(cfg, DIM, None)
    model.head.set_feature_statistics(torch.from_numpy(x[train]))
    loss = create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction)
    optimizer = build_optimizer(cfg, model, loss) if fixed else torch.optim.Adam(
        [{"params": model.head.parameters(), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(x, mirror, seed), loss=loss,
        miner=create_miner(cfg.miner, cfg.margin, seed),
        sampler=BalancedBatchSampler(labels[train], cfg.batch_classes, cfg.batch_samples,
                                     seed, batches_per_epoch=batches),
        labels=labels, train=train, val=val, optimizer=optimizer, epochs=epochs,
        device=torch.device("cpu"), eval_distance="hamming", regularizers={"quantization": 0.01},
        test_time_flip=True)
    counts: list[int] = []

    def save(path: Path, extra: dict[str, Any]) -> None:  # called after every epoch
        if path.name == "last.pt":
            counts.append(count_subnormals(state_tensors([model], optimizer)))

    with TemporaryDirectory() as folder:
        history = fit(setup, Path(folder), save)
    validation = [h.elapsed_seconds - h.train_seconds - (history[i - 1].elapsed_seconds
                                                          if i else 0.0)
                  for i, h in enumerate(history)]
    weight = first_weight(model)
    result = {
        "train_seconds": {"first": round(history[0].train_seconds, 2),
                          "last": round(history[-1].train_seconds, 2),
                          "every_epoch": [round(h.train_seconds, 2) for h in history]},
        "validation_seconds": {"first": round(validation[0], 2),
                               "last": round(validation[-1], 2)},
        "subnormals_per_epoch": counts,
        "subnormals_at_end": {
            "first_weight": count_subnormals([weight]),
            "parameters": count_subnormals(model.parameters()),
            "buffers": count_subnormals(model.buffers()),
            "optimizer_state": count_subnormals(state_tensors((), optimizer))},
        "val_map": {"first": round(history[0].val_map, 4), "last": round(history[-1].val_map, 4)},
        "total_seconds": round(history[-1].elapsed_seconds, 1)}
    return result, model, optimizer


def best_seconds(work: Callable[[], object], repeats: int = 10) -> float:
    """Best of ``repeats`` timings of ``work()`` (the least disturbed by other processes)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def product_seconds(weights: list[torch.Tensor], rows: int = 8192, rounds: int = 7
                    ) -> list[float]:
    """Best time of ``(rows, in_dim) @ weight.T`` with random rows, for each of ``weights``,
    in alternating rounds (so that a busy spell of other processes hits them alike)."""
    x = torch.randn(rows, weights[0].shape[1], generator=torch.Generator().manual_seed(0))
    best = [math.inf] * len(weights)
    for _ in range(rounds):
        for i, weight in enumerate(weights):
            start = time.perf_counter()
            x @ weight.T
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main() -> None:
    from common import write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batches", type=int, default=300, help="batches per epoch")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results, models, optimizers = {}, {}, {}
    for name, fixed in (("before", False), ("fixed", True)):
        results[name], models[name], optimizers[name] = run(fixed, args.epochs, args.batches,
                                                            args.hidden)
        print(name, results[name], flush=True)
    with torch.no_grad():
        laden = first_weight(models["before"]).detach().clone()
        model, optimizer = models["fixed"], optimizers["fixed"]
        flush = best_seconds(lambda: flush_subnormals_(state_tensors([model], optimizer)))
        adam = best_seconds(optimizers["before"].step)  # the last batch's gradients, no hook
        train_step = min(results["fixed"]["train_seconds"]["every_epoch"]) / args.batches
        step = {"adam_seconds": round(adam, 4), "flush_seconds": round(flush, 4),
                "flush_over_adam": round(flush / adam, 3),
                "train_step_seconds": round(train_step, 4),
                "flush_over_train_step": round(flush / train_step, 3)}
        flushed = laden.clone()
        flush_subnormals_([flushed])
        laden_seconds, flushed_seconds = product_seconds([laden, flushed])
        product = {"subnormals": count_subnormals([laden]),
                   "seconds_with_subnormals": round(laden_seconds, 3),
                   "seconds_flushed": round(flushed_seconds, 3)}
    product["slowdown"] = round(product["seconds_with_subnormals"]
                                / product["seconds_flushed"], 2)
    write_result("long_training", {
        "what": f"{args.epochs} epochs x {args.batches} batches of 10 x 16, frozen mode, "
                f"synthetic {DIM}-d features with {DEAD} dead dimensions, head "
                f"{DIM}-{args.hidden}-48 (tanh codes, facenet cosine random-hard margin 0.4, "
                "quantization 0.01, test-time flip); before = plain Adam (L2 weight decay "
                "1e-4), fixed = build_optimizer (subnormals flushed after every step); "
                "optimizer_step = best of 10 Adam steps (before) and flushes (fixed) of the "
                "whole head's state, train step = fastest fixed epoch / batches; "
                "product = 8,192 random rows times the before run's first weight matrix, "
                "with its subnormals and flushed, best of 7 alternating rounds",
        "runs": results, "optimizer_step": step, "product": product})


if __name__ == "__main__":
    main()
