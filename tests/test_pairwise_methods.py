"""DPSH, HashNet and DSH: each loss against a loop-based transcription of its paper's
formula, their edge cases, and each method through ``deephash hash`` on a tiny folder."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_args

from deephash.cli import main
from deephash.errors import ConfigError
from deephash.losses import create_loss
from deephash.losses.dpsh import DPSHLoss
from deephash.losses.dsh import DSHLoss
from deephash.losses.hashnet import HashNetLoss
from deephash.training.checkpoint import read_checkpoint

# a single-label batch with ties (three 0s, two 1s, a lone 2) and a multi-label one
SINGLE = [{0}, {1}, {0}, {2}, {1}, {0}]
MULTI = [{0, 1}, {1}, {2}, {0, 3}, {3}, {1, 2}, {4}]


def as_tensor(label_sets: list[set[int]]) -> torch.Tensor:
    """``(B,)`` ids when every image has one label, else ``(B, C)`` bool multi-hot rows."""
    if all(len(s) == 1 for s in label_sets):
        return torch.tensor([next(iter(s)) for s in label_sets])
    rows = torch.zeros(len(label_sets), 1 + max(max(s) for s in label_sets), dtype=torch.bool)
    for i, s in enumerate(label_sets):
        rows[i, list(s)] = True
    return rows


def ordered_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def dpsh_paper(u: list[list[float]], sets: list[set[int]], eta: float) -> float:
    """Li et al. (2016), Eq. 2 over the batch's pairs, divided by their number."""
    total = 0.0
    for i, j in ordered_pairs(len(u)):
        theta = 0.5 * dot(u[i], u[j])
        s = 1.0 if sets[i] & sets[j] else 0.0
        total -= s * theta - math.log(1 + math.exp(theta))
    for row in u:
        total += eta * sum((math.copysign(1.0, x) - x) ** 2 for x in row)
    return total / len(ordered_pairs(len(u)))


def hashnet_paper(z: list[list[float]], sets: list[set[int]], alpha: float,
                  beta: float) -> float:
    """Cao et al. (2017), Eq. 4 with the class-imbalance weights of Eq. 2 (c_ij = 1) on
    h = tanh(βz), divided by the number of pairs."""
    h = [[math.tanh(beta * x) for x in row] for row in z]
    pairs = ordered_pairs(len(z))
    n_similar = sum(1 for i, j in pairs if sets[i] & sets[j])
    total = 0.0
    for i, j in pairs:
        s = 1.0 if sets[i] & sets[j] else 0.0
        w = len(pairs) / n_similar if s else len(pairs) / (len(pairs) - n_similar)
        inner = alpha * dot(h[i], h[j])
        total += w * (math.log(1 + math.exp(inner)) - s * inner)
    return total / len(pairs)


def dsh_paper(b: list[list[float]], sets: list[set[int]], m: float, alpha: float) -> float:
    """Liu et al. (2016), Eq. 5 (y = 0 similar, 1 dissimilar), the mean over pairs."""
    total = 0.0
    for i, j in ordered_pairs(len(b)):
        y = 0.0 if sets[i] & sets[j] else 1.0
        d = sum((x - z) ** 2 for x, z in zip(b[i], b[j], strict=True))
        total += 0.5 * (1 - y) * d + 0.5 * y * max(m - d, 0.0)
        total += alpha * sum(abs(abs(x) - 1) for x in b[i] + b[j])
    return total / len(ordered_pairs(len(b)))


def codes(n: int, k: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("sets", [SINGLE, MULTI], ids=["single-label", "multi-label"])
def test_dpsh_is_the_papers_formula(sets: list[set[int]]) -> None:
    u = codes(len(sets))
    out = DPSHLoss(eta=0.7).compute(u, as_tensor(sets))
    assert float(out.loss) == pytest.approx(dpsh_paper(u.tolist(), sets, 0.7), rel=1e-9)
    assert out.n_items == len(sets) * (len(sets) - 1)


@pytest.mark.parametrize("sets", [SINGLE, MULTI], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("steps", [0, 450])
def test_hashnet_is_the_papers_formula(sets: list[set[int]], steps: int) -> None:
    z = codes(len(sets), seed=1)
    loss = HashNetLoss(alpha=0.3)
    loss.steps.fill_(steps)
    beta = math.sqrt(1 + 0.005 * (steps // 200 * 200))  # the continuation: 1, then √3
    assert loss.beta == pytest.approx(beta)
    out = loss.compute(z, as_tensor(sets))
    assert float(out.loss) == pytest.approx(hashnet_paper(z.tolist(), sets, 0.3, beta), rel=1e-9)


@pytest.mark.parametrize("sets", [SINGLE, MULTI], ids=["single-label", "multi-label"])
def test_dsh_is_the_papers_formula(sets: list[set[int]]) -> None:
    b = codes(len(sets), seed=2)
    margin = 10.0  # between the batch's smallest and largest squared distances
    out = DSHLoss(margin, alpha=0.05).compute(b, as_tensor(sets))
    assert float(out.loss) == pytest.approx(dsh_paper(b.tolist(), sets, margin, 0.05), rel=1e-9)
    squared = torch.cdist(b, b).square()
    similar = as_tensor(sets)
    same = (similar[:, None] == similar[None, :]) if similar.dim() == 1 else \
        (similar.double() @ similar.double().T) > 0
    off = ~torch.eye(len(sets), dtype=torch.bool)
    active = (same & off & (squared > 0)) | (~same & off & (squared < margin))
    assert out.n_active == int(active.sum())  # dissimilar pairs beyond m cost nothing


LOSSES: dict[str, Callable[[], torch.nn.Module]] = {
    "dpsh": DPSHLoss, "hashnet": lambda: HashNetLoss(alpha=0.2), "dsh": lambda: DSHLoss(8.0)}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("n", [0, 1])
def test_a_batch_without_pairs_gives_a_zero_loss_in_the_graph(name: str, n: int) -> None:
    u = torch.randn(n, 4, requires_grad=True)
    out = LOSSES[name]().compute(u, torch.zeros(n, dtype=torch.int64))
    assert out.loss.item() == 0.0 and out.n_items == 0
    out.loss.backward()
    assert u.grad is not None and not u.grad.any()


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_for_saturated_outputs(name: str) -> None:
    u = (codes(6, k=16, seed=3) * 1e3).float().requires_grad_()
    out = LOSSES[name]().compute(u, as_tensor(SINGLE))
    out.loss.backward()
    assert torch.isfinite(out.loss) and u.grad is not None and torch.isfinite(u.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_one_class_batch_has_only_similar_pairs(name: str) -> None:
    u = codes(4, seed=4).requires_grad_()
    out = LOSSES[name]().compute(u, torch.zeros(4, dtype=torch.int64))
    assert math.isnan(out.mean_negative_distance) and out.mean_positive_distance > 0
    out.loss.backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


def test_hashnet_weights_balance_similar_and_dissimilar_pairs() -> None:
    sets = [{0}, {0}, {1}, {2}, {3}]  # 2 similar of 20 ordered pairs
    loss = HashNetLoss(alpha=0.2)
    similar = as_tensor(sets)[:, None] == as_tensor(sets)[None, :]
    pairs = ~torch.eye(5, dtype=torch.bool)
    weights = loss.pair_weights(similar, pairs)
    assert weights[0, 1] == pytest.approx(20 / 2) and weights[0, 2] == pytest.approx(20 / 18)
    assert float(weights[pairs & similar].sum()) == float(weights[pairs & ~similar].sum())


def test_hashnet_continuation_counts_training_steps_only() -> None:
    loss = HashNetLoss(alpha=0.2, step_size=2)
    labels = as_tensor(SINGLE)
    with torch.no_grad():
        loss.compute(codes(6), labels)
    assert int(loss.steps) == 0 and loss.beta == 1.0
    for _ in range(3):
        loss.compute(codes(6).requires_grad_(), labels)
    assert int(loss.steps) == 3 and loss.beta == pytest.approx(math.sqrt(1 + 0.005 * 2))
    assert int(loss.state_dict()["steps"]) == 3  # checkpointed with the loss


def test_bad_hyper_parameters_are_one_line_errors() -> None:
    for build in (lambda: DPSHLoss(eta=-1.0), lambda: DSHLoss(4.0, alpha=-0.1),
                  lambda: HashNetLoss(alpha=0.0)):
        with pytest.raises(ConfigError) as raised:
            build()
        assert "\n" not in str(raised.value)


def test_the_registry_builds_each_method_with_its_defaults() -> None:
    dpsh = create_loss("dpsh", 0.0, embedding_dim=48)
    hashnet = create_loss("hashnet", 0.0, embedding_dim=48)
    dsh = create_loss("dsh", 96.0, embedding_dim=48)
    assert isinstance(dpsh, DPSHLoss) and dpsh.eta == 10.0
    assert isinstance(hashnet, HashNetLoss) and hashnet.alpha == pytest.approx(10 / 48)
    assert isinstance(dsh, DSHLoss) and dsh.margin == 96.0 and dsh.alpha == 0.01
    assert not any(loss.uses_miner for loss in (dpsh, hashnet, dsh))


@pytest.mark.parametrize("method", ["dpsh", "hashnet", "dsh"])
def test_each_method_runs_through_hash(method: str, folder: Path, tmp_path: Path) -> None:
    run = tmp_path / method
    args = tiny_run_args(folder, tmp_path / "c")
    assert main(["hash", "--method", method, "--out", str(run), "--bits", "8", *args]) == 0
    metrics = json.loads((run / "bits-8" / "metrics.json").read_text())
    assert metrics["distance"] == "hamming" and 0 <= metrics["map@all"] <= 1
    history = json.loads((run / "bits-8" / "history.json").read_text())
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    config = (run / "bits-8" / "config.yaml").read_text()
    assert f"loss: {method}" in config and "activation: none" in config
    assert "regularizers: []" in config  # DTSH's terms are not the method's
    if method == "hashnet":  # the continuation's step count is checkpointed with the loss
        steps = int(read_checkpoint(run / "bits-8" / "last.pt")["loss"]["steps"])
        assert steps > 0 and steps % 2 == 0  # as many training steps in each of 2 epochs


def test_dsh_margin_is_twice_the_bits_unless_given(folder: Path, tmp_path: Path) -> None:
    args = tiny_run_args(folder, tmp_path / "c", epochs=1)
    assert main(["hash", "--method", "dsh", "--out", str(tmp_path / "a"), "--bits", "8",
                 *args]) == 0
    assert "margin: 16.0" in (tmp_path / "a" / "bits-8" / "config.yaml").read_text()
    assert main(["hash", "--method", "dsh", "--margin", "5", "--out", str(tmp_path / "b"),
                 "--bits", "8", *args]) == 0
    assert "margin: 5.0" in (tmp_path / "b" / "bits-8" / "config.yaml").read_text()
    history = json.loads((tmp_path / "b" / "bits-8" / "history.json").read_text())
    assert [h["margin"] for h in history] == [5.0]  # recorded, like a metric loss's
    assert main(["hash", "--method", "dsh", "--schedules", "margin=linear:4:16", "--out",
                 str(tmp_path / "s"), "--bits", "8",
                 *tiny_run_args(folder, tmp_path / "c", epochs=2)]) == 0
    history = json.loads((tmp_path / "s" / "bits-8" / "history.json").read_text())
    assert [h["margin"] for h in history] == [4.0, 16.0]  # and scheduled


def test_a_negative_dsh_margin_is_refused_in_one_line(folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert main(["hash", "--method", "dsh", "--margin", "-1", "--out", str(out),
                 *tiny_run_args(folder, tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--margin must be greater than 0 for the dsh loss" in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("loss", ["dpsh", "hashnet", "dsh"])
def test_each_method_trains_on_multi_labels(tmp_path: Path, loss: str) -> None:
    from deephash.training.trainer import fit
    from tests.test_multilabel_training import multi_label_features, multi_label_setup
    from tests.test_trainer import saver

    data = multi_label_features()
    setup, config = multi_label_setup(data, loss, epochs=3)
    history = fit(setup, tmp_path, saver(setup, config))
    assert all(0 < h.val_map <= 1 and h.empty_batches == 0 for h in history)
    assert history[-1].loss < history[0].loss


def test_pairwise_methods_are_titled_and_checked_as_pair_losses() -> None:
    import numpy as np

    from deephash.errors import DataError
    from deephash.losses import loss_traits
    from deephash.pipeline.evaluate import method_title
    from deephash.training.config import TrainConfig, TrainingConfig
    from deephash.training.label_support import check_labels_supported

    assert [loss_traits(n).every_pair for n in ("dpsh", "hashnet", "dsh", "softmax", "dtsh")] \
        == [True, True, True, False, False]
    assert method_title("dsh", "batch-all", 16.0) == "dsh, every pair, margin 16"
    assert method_title("dpsh", "batch-all", 8.0) == "dpsh, every pair"  # no margin
    assert method_title("softmax", "batch-all") == "softmax classifier"
    one_class = np.zeros(6, dtype=np.int64)  # every pair similar: nothing to tell apart
    with pytest.raises(DataError, match="so the hashnet loss has no negative"):
        check_labels_supported(TrainConfig(training=TrainingConfig(loss="hashnet")), one_class)
    check_labels_supported(TrainConfig(training=TrainingConfig(loss="softmax")), one_class)
