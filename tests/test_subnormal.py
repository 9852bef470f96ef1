"""Subnormal floats (issue 11, point 6): weights that get no loss gradient decay geometrically
under Adam's L2 term into the subnormal range, where they stick and slow Intel CPUs down;
the optimizer that training uses flushes them after every step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deephash.losses import create_loss
from deephash.miners import create_miner
from deephash.training.config import TrainingConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel, build_model
from deephash.training.optimizer import build_optimizer
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.subnormals import (
    count_subnormals,
    flush_subnormals_,
    is_subnormal,
    largest_subnormal,
    state_tensors,
)
from deephash.training.trainer import TrainingSetup, fit

DEAD_DIMS = 2   #: feature dimensions constant on the training set: they enter the head as 0
DEAD_UNITS = 2  #: hidden units whose ReLU never fires (BatchNorm's shift far below zero)
STEPS = 1800    #: enough for a geometric decay at Adam's fastest rate, sqrt(0.9) a step


def dying_data(seed: int = 0, per_class: int = 12, dim: int = 8) -> dict:
    """4 classes of noisy clusters in ``dim`` dimensions, the first ``DEAD_DIMS`` constant."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per_class)
    x = rng.normal(size=(4, dim))[labels] * 1.5 + rng.normal(size=(len(labels), dim))
    x[:, :DEAD_DIMS] = 0.5
    order = rng.permutation(len(labels))
    return {"x": x.astype(np.float32), "labels": labels, "train": np.sort(order[8:]),
            "val": np.sort(order[:8])}


def train(data: dict, run: Path, flush: bool) -> tuple[EmbeddingModel, torch.nn.Module,
                                                       torch.optim.Optimizer]:
    """``STEPS`` steps of the training loop with the optimizer training builds
    (``flush=True``) or plain Adam with the same settings, the update rule before the fix.

    Training makes dead units slowly (the issue's 128-px run had 87 of 2,048 by epoch 36),
    so here ``DEAD_UNITS`` are dead from the start: their BatchNorm shift is -10. The
    softmax loss is the cheapest per step, and its class weights are optimizer state too.
    """
    cfg = TrainingConfig(loss="softmax", epochs=4, batch_classes=4, batch_samples=4,
                         hidden_dims=(16,), embedding_dim=4, lr=1e-2)
    torch.manual_seed(0)
    model = build_model(cfg, data["x"].shape[1], None)
    model.head.set_feature_statistics(torch.from_numpy(data["x"][data["train"]]))
    with torch.no_grad():
        model.head.layers[1].bias[:DEAD_UNITS] = -10.0
    loss = create_loss("softmax", cfg.margin, num_classes=4, embedding_dim=cfg.embedding_dim)
    optimizer = build_optimizer(cfg, model, loss) if flush else torch.optim.Adam(
        [{"params": model.head.parameters()}, {"params": loss.parameters()}], lr=cfg.lr,
        weight_decay=cfg.weight_decay)  # the same groups, without the flush
    sampler = BalancedBatchSampler(data["labels"][data["train"]], 4, 4, 0,
                                   batches_per_epoch=STEPS // cfg.epochs)
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(data["x"], None, 0, augment=False), loss=loss,
        miner=create_miner("semi-hard", cfg.margin, 0), sampler=sampler,
        labels=data["labels"], train=data["train"], val=data["val"], optimizer=optimizer,
        epochs=cfg.epochs, device=torch.device("cpu"), eval_distance="cosine")
    fit(setup, run, lambda path, extra: None)
    return model, loss, optimizer


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits (10x slower on 2 cores)
    try:
        data = dying_data()
        return {"data": (data,), **{name: train(data, tmp_path_factory.mktemp(name), flush)
                                    for name, flush in (("before", False), ("fixed", True))}}
    finally:
        torch.set_num_threads(threads)


def per_kind(model: EmbeddingModel, loss: torch.nn.Module,
             optimizer: torch.optim.Optimizer) -> dict[str, int]:
    return {"parameters": count_subnormals([*model.parameters(), *loss.parameters()]),
            "buffers": count_subnormals(model.buffers()),
            "optimizer state": count_subnormals(state_tensors((), optimizer))}


def test_the_update_rule_before_the_fix_leaves_subnormals_where_no_gradient_flows(
        runs: dict[str, tuple]) -> None:
    model, loss, optimizer = runs["before"]
    counts = per_kind(model, loss, optimizer)
    assert all(n > 0 for n in counts.values()), counts  # the test below can fail
    first = model.head.layers[0].weight
    assert is_subnormal(first[:DEAD_UNITS]).any() and is_subnormal(first[:, :DEAD_DIMS]).any()
    assert not is_subnormal(first[DEAD_UNITS:, DEAD_DIMS:]).any()  # live weights: none
    running_var = model.head.layers[1].running_var
    assert is_subnormal(running_var[:DEAD_UNITS]).all()


def test_training_leaves_no_subnormal_in_parameters_buffers_or_optimizer_state(
        runs: dict[str, tuple]) -> None:
    model, loss, optimizer = runs["fixed"]
    assert per_kind(model, loss, optimizer) == {
        "parameters": 0, "buffers": 0, "optimizer state": 0}
    first = model.head.layers[0].weight.detach()
    for dead in (first[:DEAD_UNITS], first[:, :DEAD_DIMS]):  # they decayed as before, and
        assert dead.abs().max() < 1e-25  # each value that left the normal range became 0


def test_the_flush_changes_no_live_weight_and_no_embedding(runs: dict[str, tuple]) -> None:
    (data,) = runs["data"]
    (before, _, _), (fixed, _, _) = runs["before"], runs["fixed"]
    for name, weight in before.named_parameters():
        other = dict(fixed.named_parameters())[name]
        live = torch.ones_like(weight, dtype=torch.bool)  # all but what had no gradient:
        if name.startswith(("head.layers.0.", "head.layers.1.")):
            live[:DEAD_UNITS] = False  # the dead units' weights, bias, BatchNorm scale, shift
        if name == "head.layers.0.weight":
            live[:, :DEAD_DIMS] = False  # the dead feature dimensions' weights
        if name == "head.layers.3.weight":
            live[:, :DEAD_UNITS] = False  # the output layer's weights of the dead units
        assert torch.equal(weight[live], other[live]), name
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        assert torch.equal(before.eval()(x), fixed.eval()(x))


def test_a_checkpoint_and_an_optimizer_state_with_subnormals_load_flushed(
        runs: dict[str, tuple]) -> None:
    """A ``best.pt`` or ``last.pt`` written before the fix: inference and resume."""
    model, loss, optimizer = runs["before"]
    (data,) = runs["data"]
    cfg = TrainingConfig(hidden_dims=(16,), embedding_dim=4, loss="softmax")
    fresh = build_model(cfg, data["x"].shape[1], None)
    fresh.load_state_dict(model.state_dict())
    assert count_subnormals(model.state_dict().values()) > 0
    assert count_subnormals(fresh.state_dict().values()) == 0
    resumed = build_optimizer(cfg, fresh, loss)
    before = count_subnormals(state_tensors((), optimizer))
    resumed.load_state_dict(optimizer.state_dict())
    assert count_subnormals(state_tensors((), resumed)) == 0
    assert count_subnormals(state_tensors((), optimizer)) == before > 0  # the source intact


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_flush_zeroes_subnormals_and_nothing_else(dtype: torch.dtype) -> None:
    info = torch.finfo(dtype)
    small = largest_subnormal(dtype)
    x = torch.tensor([small, -small, info.tiny, -info.tiny, 1.0, -2.5, info.max, 0.0,
                      float("inf"), float("-inf"), float("nan"), small / 7.3,
                      info.tiny * info.eps], dtype=torch.float64).to(dtype)
    assert is_subnormal(x).tolist() == [True, True] + [False] * 9 + [True, True]
    kept = x.clone()
    flush_subnormals_([x])
    assert count_subnormals([x]) == 0
    assert (x[is_subnormal(kept)] == 0).all()
    normal = ~is_subnormal(kept)
    assert torch.equal(x[normal].view(-1).nan_to_num(), kept[normal].nan_to_num())
    assert x[-3].isnan()
