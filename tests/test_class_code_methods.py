"""The methods that learn codes against class targets (CSQ, OrthoHash, GreedyHash): each
loss against a loop-by-loop transcription of its paper's formula (single labels with ties,
a multi-label batch), the hash centres, the straight-through sign, and each method through
``deephash hash`` on tiny data (single- and multi-label)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, tiny_run_args

from deephash.cli import main
from deephash.errors import ConfigError
from deephash.hashing.centres import (
    bernoulli_centres,
    hadamard,
    hadamard_centres,
    label_set_centres,
)
from deephash.hashing.codes import straight_through_sign
from deephash.labels import LabelSet
from deephash.losses import (
    CSQLoss,
    GreedyHashLoss,
    OrthoHashLoss,
    create_loss,
    loss_traits,
)
from deephash.miners import create_miner
from deephash.registries import HASHING_METHODS
from deephash.studies.configs import dtsh_training
from deephash.training.checkpoint import read_checkpoint, save_checkpoint
from deephash.training.config import TrainConfig
from deephash.training.head import EmbeddingHead
from deephash.training.inputs import FeatureInputs
from deephash.training.model import build_model
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.trainer import TrainingSetup, fit, validate

METHODS = ("csq", "orthohash", "greedyhash")
# single labels with ties: repeated classes, a repeated code, exact zeros in the codes
IDS = torch.tensor([0, 2, 2, 1, 0, 2])
HOT = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]],
                   dtype=torch.bool)


def relaxed_codes(bits: int, tanh: bool, seed: int = 0) -> torch.Tensor:
    """``(6, bits)`` float64 codes with exact zeros and two equal rows."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randn(6, bits, generator=generator, dtype=torch.float64) * 1.5
    codes = torch.tanh(codes) if tanh else codes
    codes[0, 0] = codes[3, 1] = 0.0
    codes[4] = codes[1]
    return codes


def label_lists(labels: torch.Tensor) -> list[list[int]]:
    if labels.dim() == 1:
        return [[int(y)] for y in labels]
    return [[c for c, on in enumerate(row) if on] for row in labels.tolist()]


def sign(x: float) -> float:
    return 1.0 if x >= 0 else -1.0


# -- the paper's formulas, one image and one bit at a time -----------------------------------

def csq_by_hand(codes: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                tie: torch.Tensor, lam: float) -> float:
    """Yuan et al.: (1/K) Σ_k BCE((h+1)/2, (t+1)/2) + λ (1/K) Σ_k (|h|-1)², t the image's
    centre (for a label set: sign of the mean of its centres, a tie from ``tie``)."""
    total = 0.0
    for row, classes in zip(codes.tolist(), label_lists(labels), strict=True):
        k_bits = len(row)
        value = 0.0
        for k, h in enumerate(row):
            mean = sum(float(centres[c, k]) for c in classes) / len(classes)
            t = float(tie[k]) if mean == 0 else sign(mean)
            p, y = (h + 1) / 2, (t + 1) / 2
            value -= (y * math.log(p) + (1 - y) * math.log(1 - p)) / k_bits
            value += lam * (abs(h) - 1) ** 2 / k_bits
        total += value
    return total / len(codes)


def orthohash_by_hand(codes: torch.Tensor, labels: torch.Tensor, codebook: torch.Tensor,
                      s: float, m: float) -> float:
    """Hoe et al.: z_c = s (cos(v, w_c) - m [c in y]); -log softmax(z)_y, on label sets
    -Σ_{c in y} (1/|y|) log softmax(z)_c."""
    total = 0.0
    for row, classes in zip(codes.tolist(), label_lists(labels), strict=True):
        norm = math.sqrt(sum(v * v for v in row))
        logits = []
        for c, code in enumerate(codebook.tolist()):
            cosine = sum(v * w for v, w in zip(row, code, strict=True)) / (
                norm * math.sqrt(sum(w * w for w in code)))
            logits.append(s * (cosine - (m if c in classes else 0.0)))
        log_sum = math.log(sum(math.exp(z) for z in logits))
        total -= sum(logits[c] - log_sum for c in classes) / len(classes)
    return total / len(codes)


def greedyhash_by_hand(codes: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                       alpha: float) -> float:
    """Su et al.: CE(W sgn(h), y) + α (1/K) Σ_k ||h_k| - 1|³; on label sets the mean over
    classes of the binary cross-entropy of sigmoid(W sgn(h))."""
    total = 0.0
    for row, classes, in zip(codes.tolist(), label_lists(labels), strict=True):
        b = [sign(h) for h in row]
        logits = [sum(w * bk for w, bk in zip(w_c, b, strict=True)) for w_c in weight.tolist()]
        if labels.dim() == 1:
            fit = -(logits[classes[0]] - math.log(sum(math.exp(z) for z in logits)))
        else:
            fit = 0.0
            for c, z in enumerate(logits):
                p = 1 / (1 + math.exp(-z))
                fit -= (math.log(p) if c in classes else math.log(1 - p)) / len(logits)
        penalty = sum(abs(abs(h) - 1) ** 3 for h in row) / len(row)
        total += fit + alpha * penalty
    return total / len(codes)


@pytest.mark.parametrize("labels", [IDS, HOT], ids=["single", "multi"])
@pytest.mark.parametrize("bits", [8, 6])  # Hadamard centres, and the Bernoulli fallback
def test_csq_against_the_formula(labels: torch.Tensor, bits: int) -> None:
    loss = CSQLoss(3, bits, quantization_weight=0.7).double()
    codes = relaxed_codes(bits, tanh=True).requires_grad_()
    out = loss.compute(codes, labels)
    expected = csq_by_hand(codes.detach(), labels, loss.centres, loss.tie_break, 0.7)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    out.loss.backward()
    assert codes.grad is not None and codes.grad.isfinite().all()
    # the top-scoring centre per image, by hand
    scores = codes.detach() @ loss.centres.T
    wrong = sum(int(scores[i].argmax()) not in ys for i, ys in enumerate(label_lists(labels)))
    assert out.n_items == 6 and out.n_active == wrong


@pytest.mark.parametrize("labels", [IDS, HOT], ids=["single", "multi"])
def test_orthohash_against_the_formula(labels: torch.Tensor) -> None:
    loss = OrthoHashLoss(3, 8, scale=5.0, margin=0.3).double()
    codes = relaxed_codes(8, tanh=False, seed=1).requires_grad_()
    out = loss.compute(codes, labels)
    expected = orthohash_by_hand(codes.detach(), labels, loss.codebook, 5.0, 0.3)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    out.loss.backward()
    assert codes.grad is not None and codes.grad.isfinite().all()


@pytest.mark.parametrize("labels", [IDS, HOT], ids=["single", "multi"])
def test_greedyhash_against_the_formula(labels: torch.Tensor) -> None:
    torch.manual_seed(0)
    loss = GreedyHashLoss(3, 8, penalty_weight=0.4).double()
    codes = relaxed_codes(8, tanh=False, seed=2).requires_grad_()
    out = loss.compute(codes, labels)
    weight = loss.classifier.weight.detach()
    assert out.loss.item() == pytest.approx(greedyhash_by_hand(codes.detach(), labels, weight,
                                                               0.4), rel=1e-12)
    out.loss.backward()
    assert codes.grad is not None and codes.grad.isfinite().all()
    assert loss.classifier.weight.grad is not None


def test_greedyhash_gradient_is_the_straight_through_one() -> None:
    """d/dh of CE(W sgn(h)) is the gradient with respect to b itself (identity through the
    sign); the penalty adds α (1/K) 3 ||h|-1|² sgn(|h|-1) sgn(h) per bit."""
    torch.manual_seed(1)
    loss = GreedyHashLoss(3, 5, penalty_weight=0.0).double()
    codes = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1])
    loss.compute(codes, labels).loss.backward()
    b = codes.detach().sign().requires_grad_()
    torch.nn.functional.cross_entropy(loss.classifier(b), labels).backward()
    assert codes.grad is not None and b.grad is not None
    assert torch.allclose(codes.grad, b.grad)


def test_straight_through_sign_forward_is_sign_backward_is_identity() -> None:
    u = torch.tensor([[-2.0, -0.0, 0.0, 1e-8, 0.3, 5.0]], requires_grad=True)
    b = straight_through_sign(u)
    assert b.tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]  # sign(0) = +1, as binarize
    upstream = torch.tensor([[0.5, -1.0, 2.0, 3.0, -4.0, 0.25]])
    b.backward(upstream)
    assert u.grad is not None and torch.equal(u.grad, upstream)


def test_the_sign_identity_activation_trains_like_no_activation() -> None:
    """``sign-identity``: ±1 outputs, and every parameter's gradient that of the head
    without activation (the identity in the backward pass); ``sign`` keeps tanh's."""
    torch.manual_seed(0)
    heads = {a: EmbeddingHead(6, (5,), 4, normalize=False, activation=a)
             for a in ("none", "sign-identity", "sign")}
    state = heads["none"].state_dict()
    x, upstream = torch.randn(7, 6), torch.randn(7, 4)
    grads = {}
    for name, head in heads.items():
        head.load_state_dict(state)
        out = head(x)
        if name != "none":
            assert set(out.unique().tolist()) <= {-1.0, 1.0}
            assert torch.equal(out, torch.where(heads["none"](x) >= 0, 1.0, -1.0))
        (out * upstream).sum().backward()
        grads[name] = [p.grad.clone() for p in head.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b) for a, b in zip(grads["none"], grads["sign-identity"],
                                                    strict=True))
    assert not torch.allclose(grads["none"][-1], grads["sign"][-1])


# -- hash centres ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 4, 8, 16, 32, 64])
def test_hadamard_is_orthogonal_and_plus_minus_one(k: int) -> None:
    matrix = hadamard(k)
    assert matrix.shape == (k, k) and set(matrix.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(matrix @ matrix.T, k * torch.eye(k))


@pytest.mark.parametrize(("classes", "bits"), [(3, 8), (8, 8), (16, 8), (10, 16), (100, 64)])
def test_hadamard_centres_are_distinct_rows_and_their_negations(classes: int, bits: int) -> None:
    centres = hadamard_centres(classes, bits, seed=3)
    matrix = hadamard(bits)
    assert torch.equal(centres, torch.cat([matrix, -matrix])[:classes])
    assert len(centres.unique(dim=0)) == classes
    # Hamming distance K/2 between any two, except K between a row and its negation
    distance = (bits - centres @ centres.T) / 2
    off = distance[~torch.eye(classes, dtype=torch.bool)]
    assert set(off.unique().tolist()) <= {bits / 2, float(bits)}


@pytest.mark.parametrize(("classes", "bits"), [(17, 8), (10, 48), (5, 6)])
def test_bernoulli_fallback_is_seeded_distinct_plus_minus_one(classes: int, bits: int) -> None:
    centres = hadamard_centres(classes, bits, seed=4)
    assert torch.equal(centres, bernoulli_centres(classes, bits, seed=4))  # the fallback
    assert torch.equal(centres, hadamard_centres(classes, bits, seed=4))  # deterministic
    assert not torch.equal(centres, hadamard_centres(classes, bits, seed=5))
    assert set(centres.unique().tolist()) <= {-1.0, 1.0}
    assert len(centres.unique(dim=0)) == classes


def test_bernoulli_bits_are_fair() -> None:
    centres = bernoulli_centres(200, 64, seed=0)
    assert abs(float((centres > 0).float().mean()) - 0.5) < 0.01


def test_label_set_centres_against_a_loop() -> None:
    centres = torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1], [-1, -1, -1, 1]])
    tie = torch.tensor([-1.0, 1, 1, -1])
    hot = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    assert label_set_centres(centres, hot, tie).tolist() == [
        [1, 1, -1, -1], [1, 1, 1, -1], [1, -1, -1, -1], [-1, 1, 1, -1]]
    assert torch.equal(label_set_centres(centres, torch.tensor([2, 0]), tie), centres[[2, 0]])


def test_class_codes_live_in_the_loss_state() -> None:
    """The centres of a checkpoint's loss state are the ones a run trained against, even
    into a loss built with another seed."""
    first, other = CSQLoss(12, 6, seed=0), CSQLoss(12, 6, seed=9)
    assert not torch.equal(first.centres, other.centres)
    other.load_state_dict(first.state_dict())
    assert torch.equal(first.centres, other.centres)
    assert torch.equal(first.tie_break, other.tie_break)
    ortho = OrthoHashLoss(3, 8)
    assert torch.equal(ortho.state_dict()["codebook"], OrthoHashLoss(3, 8).codebook)


@pytest.mark.parametrize("name", METHODS)
def test_registered_losses_and_their_refusals(name: str) -> None:
    traits = loss_traits(name)
    assert not traits.uses_miner and not traits.uses_margin
    loss = create_loss(name, 8.0, num_classes=3, embedding_dim=16)
    assert loss.name == name
    with pytest.raises(ConfigError, match="multi-hot labels of 4 classes"):
        loss.compute(torch.zeros(2, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="needs two classes"):
        create_loss(name, 0.0, num_classes=1, embedding_dim=16)


@pytest.mark.parametrize(("name", "activation"), [("csq", "tanh"), ("orthohash", "none"),
                                                  ("greedyhash", "none")])
def test_hashing_methods_set_their_loss_and_activation(name: str, activation: str) -> None:
    training = HASHING_METHODS.create(name, dtsh_training())
    assert (training.loss, training.activation) == (name, activation)
    assert not training.normalize and training.regularizers == ()
    assert training.embedding_dim == dtsh_training().embedding_dim


# -- through deephash hash -------------------------------------------------------------------

def check_run(run: Path, name: str, bits: int) -> dict:
    metrics = json.loads((run / f"bits-{bits}" / "metrics.json").read_text())
    assert metrics["distance"] == "hamming" and metrics["bits"] == bits
    assert 0 <= metrics["map@all"] <= 1
    config = (run / f"bits-{bits}" / "config.yaml").read_text()
    assert f"loss: {name}" in config
    return metrics


@pytest.mark.parametrize("name", METHODS)
def test_each_method_through_hash(name: str, folder: Path, tmp_path: Path) -> None:
    run = tmp_path / name
    assert main(["hash", "--method", name, "--out", str(run), "--bits", "16",
                 *tiny_run_args(folder, tmp_path / "c")]) == 0
    check_run(run, name, 16)
    checkpoint = read_checkpoint(run / "bits-16" / "best.pt")
    if name == "csq":  # 3 classes, 16 bits: the first rows of the Hadamard matrix
        assert torch.equal(torch.as_tensor(checkpoint["loss"]["centres"]), hadamard(16)[:3])
    history = json.loads((run / "bits-16" / "history.json").read_text())
    assert all(math.isfinite(h["loss"]) and h["empty_batches"] == 0 for h in history)


def multi_label_lists(root: Path) -> Path:
    """The tiny image folder as list files with two- and one-label multi-hot rows."""
    make_image_folder(root, n_classes=3, n_train=12, n_test=4)
    rng = np.random.default_rng(0)
    parts = {}
    for part in ("train", "test"):
        lines = []
        for c in range(3):
            for image in sorted((root / part / f"class{c}").iterdir()):
                vector = [int(k == c or (rng.random() < 0.3)) for k in range(3)]
                lines.append(f"{part}/class{c}/{image.name} {' '.join(map(str, vector))}\n")
        parts[part] = lines
    (root / "train.txt").write_text("".join(parts["train"]))
    (root / "test.txt").write_text("".join(parts["test"]))
    (root / "database.txt").write_text("".join(parts["train"]))
    return root


@pytest.mark.parametrize("name", METHODS)
def test_each_method_through_hash_on_multi_labels(name: str, tmp_path: Path) -> None:
    data = multi_label_lists(tmp_path / "lists")
    run = tmp_path / name
    assert main(["hash", "--method", name, "--out", str(run), "--bits", "8",
                 *tiny_run_args(data, tmp_path / "c")]) == 0
    metrics = check_run(run, name, 8)
    assert "knn_acc@10" not in metrics  # multi-label: no kNN accuracy


# -- each method learns codes that retrieve by class -------------------------------------------

def blob_features(multi: bool, seed: int = 0, n: int = 160, n_classes: int = 4,
                  dim: int = 16) -> tuple[np.ndarray, LabelSet]:
    """``(n, dim)`` features, the sum of a Gaussian centre per label plus noise, and their
    labels: one class each, or (``multi``) one or two."""
    rng = np.random.default_rng(seed)
    lists = [[i % n_classes] + ([int(rng.integers(n_classes))] if multi and i % 2 else [])
             for i in range(n)]
    labels = LabelSet.from_lists(lists, n_classes)
    x = labels.multi_hot.astype(np.float64) @ rng.normal(size=(n_classes, dim)) * 2
    return (x + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("name", METHODS)
def test_each_method_learns_codes_that_retrieve_by_class(name: str, multi: bool,
                                                         tmp_path: Path) -> None:
    x, labels = blob_features(multi)
    cfg = HASHING_METHODS.create(name, dataclasses.replace(
        dtsh_training(), embedding_dim=16, hidden_dims=(32,), epochs=8, batch_classes=4,
        batch_samples=8))
    torch.manual_seed(0)
    model = build_model(cfg, x.shape[1], None)
    loss = create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction, num_classes=4,
                       embedding_dim=16)
    train, val = np.arange(40, 160), np.arange(40)
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(x, None, 0), loss=loss,
        miner=create_miner(cfg.miner, cfg.margin, 0),
        sampler=BalancedBatchSampler(labels[train], 4, 8, 0, needs_positives=False),
        labels=labels, train=train, val=val,
        optimizer=torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=5e-3),
        epochs=cfg.epochs, device=torch.device("cpu"), eval_distance="hamming")
    before, _ = validate(setup)
    config = TrainConfig(training=cfg, seed=0)
    history = fit(setup, tmp_path, lambda path, extra: save_checkpoint(
        path, config, setup.model, loss=setup.loss.state_dict(), **extra))
    assert history[-1].loss < history[0].loss
    assert max(h.val_map for h in history) > max(before, 0.9)
