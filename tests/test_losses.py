"""Losses against brute-force loops over all triplets and pytorch-metric-learning."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.distances import LpDistance

from deephash.losses import BATCH_DISTANCES, LOSSES, create_loss, loss_traits, pairs_of
from deephash.miners import BatchAllMiner, MiningBatch, Triplets, create_miner

METRIC_LOSSES = [name for name in LOSSES.names() if loss_traits(name).uses_miner]


def embeddings(seed: int, n: int = 12, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(n) % 3
    return x, labels


def all_triplets(x: torch.Tensor, labels: torch.Tensor) -> Triplets:
    d = torch.cdist(x.detach(), x.detach())
    return BatchAllMiner().mine(MiningBatch(d, labels, x.detach()))


@pytest.mark.parametrize("name", BATCH_DISTANCES.names())
def test_distances_against_references(name: str) -> None:
    x, _ = embeddings(0)
    got = BATCH_DISTANCES.create(name).matrix(x)
    a, b = x[:, None, :], x[None, :, :]
    expected = {"euclidean": (a - b).norm(dim=2), "sqeuclidean": (a - b).square().sum(2),
                "cosine": 1 - torch.nn.functional.cosine_similarity(a, b, dim=2),
                "neg-half-inner": (-0.5 * (x @ x.T)).fill_diagonal_(0.0)}[name]
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-7)
    assert torch.all(got.diagonal() == 0)


@pytest.mark.parametrize("reduction", ["mean", "mean_active", "sum"])
@pytest.mark.parametrize("name", ["facenet", "hoffer"])
def test_triplet_losses_against_a_loop(name: str, reduction: str) -> None:
    x, labels = embeddings(1)
    loss = create_loss(name, margin=0.7, distance="euclidean", reduction=reduction)
    out = loss(loss.distance.matrix(x), all_triplets(x, labels))
    values = []
    for a, p, n in itertools.product(range(len(x)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
            d_ap, d_an = (x[a] - x[p]).norm().item(), (x[a] - x[n]).norm().item()
            if name == "facenet":
                values.append(max(0.0, d_ap - d_an + 0.7))
            else:
                e_p, e_n = math.exp(d_ap), math.exp(d_an)
                values.append((e_p / (e_p + e_n)) ** 2 + (e_n / (e_p + e_n) - 1) ** 2)
    active = [v for v in values if v > 0]
    expected = {"mean": sum(values) / len(values), "sum": sum(values),
                "mean_active": sum(active) / len(active)}[reduction]
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    assert out.n_items == len(values) and out.n_active == len(active)


@pytest.mark.parametrize("miner", ["batch-all", "batch-hard", "semi-hard"])
@pytest.mark.parametrize("normalize", [False, True])
def test_facenet_matches_pml_triplet_margin_loss(miner: str, normalize: bool) -> None:
    x, labels = embeddings(2, n=16)
    x = torch.nn.functional.normalize(x, dim=1) if normalize else x
    loss = create_loss("facenet", margin=0.3, reduction="mean_active")
    distances = loss.distance.matrix(x)
    triplets = create_miner(miner, 0.3).mine(MiningBatch(distances.detach(), labels, x.detach()))
    ours = loss(distances, triplets).loss
    pml = pml_losses.TripletMarginLoss(margin=0.3, distance=LpDistance(normalize_embeddings=False),
                                       reducer=pml_reducers.AvgNonZeroReducer())
    reference = pml(x, labels, indices_tuple=tuple(triplets))
    torch.testing.assert_close(ours, reference)
    mean_reference = pml_losses.TripletMarginLoss(
        margin=0.3, distance=LpDistance(normalize_embeddings=False),
        reducer=pml_reducers.MeanReducer())(x, labels, indices_tuple=tuple(triplets))
    torch.testing.assert_close(create_loss("facenet", 0.3)(distances, triplets).loss,
                               mean_reference)


def test_contrastive_pairs_and_values() -> None:
    x, labels = embeddings(3)
    triplets = create_miner("batch-hard", 1.0).mine(
        MiningBatch(torch.cdist(x.detach(), x.detach()), labels, x.detach()))
    first, second, same = pairs_of(triplets)
    expected_pairs = sorted({(a, p, True) for a, p, _ in zip(*(t.tolist() for t in triplets),
                                                             strict=True)}
                            | {(a, n, False) for a, _, n in zip(*(t.tolist() for t in triplets),
                                                                strict=True)})
    got = sorted(zip(first.tolist(), second.tolist(), same.tolist(), strict=True))
    assert got == expected_pairs
    loss = create_loss("contrastive", margin=1.5)
    out = loss(loss.distance.matrix(x), triplets)
    values = [0.5 * (x[i] - x[j]).norm().item() ** 2 if s
              else 0.5 * max(0.0, 1.5 - (x[i] - x[j]).norm().item()) ** 2
              for i, j, s in expected_pairs]
    assert out.loss.item() == pytest.approx(sum(values) / len(values), rel=1e-9)


@pytest.mark.parametrize("name", METRIC_LOSSES)
def test_empty_triplets_give_zero_loss_with_a_gradient_path(name: str) -> None:
    x, _ = embeddings(4)
    loss = create_loss(name, margin=0.5)
    out = loss(loss.distance.matrix(x), Triplets.empty(x.device))
    assert out.loss.item() == 0.0 and out.n_items == 0 and out.active_fraction == 0.0
    out.loss.backward()
    assert x.grad is not None and torch.all(x.grad == 0)


@pytest.mark.parametrize("distance", BATCH_DISTANCES.names())
@pytest.mark.parametrize("name", METRIC_LOSSES)
def test_gradients_stay_finite_when_embeddings_coincide(name: str, distance: str) -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])  # anchor 0 and positive 1 coincide, and negative 2
    loss = create_loss(name, margin=0.5, distance=distance)
    distances = loss.distance.matrix(x)
    out = loss(distances, all_triplets(x, labels))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()


def test_hoffer_is_finite_for_huge_distances() -> None:
    loss = create_loss("hoffer", margin=0.0)
    d_ap = torch.tensor([1e4, 0.0, 800.0], requires_grad=True)
    d_an = torch.tensor([0.0, 1e4, 1e3])
    values = loss.per_item(d_ap, d_an)
    torch.testing.assert_close(values, torch.tensor([2.0, 0.0, 0.0]))
    values.sum().backward()
    assert torch.isfinite(d_ap.grad).all()


def test_unknown_reduction_is_refused() -> None:
    from deephash.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown reduction 'median'"):
        create_loss("facenet", 0.2, reduction="median")


def test_dtsh_against_a_loop_over_all_triplets() -> None:
    x, labels = embeddings(5)
    loss = create_loss("dtsh", margin=1.5, distance="neg-half-inner")
    out = loss(loss.distance.matrix(x), all_triplets(x, labels))
    values = []
    for a, p, n in itertools.product(range(len(x)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
            theta_ap = 0.5 * float(x[a].detach() @ x[p].detach())
            theta_an = 0.5 * float(x[a].detach() @ x[n].detach())
            values.append(-math.log(1.0 / (1.0 + math.exp(-(theta_ap - theta_an - 1.5)))))
    assert out.loss.item() == pytest.approx(sum(values) / len(values), rel=1e-9)


def test_dtsh_is_finite_for_huge_codes() -> None:
    u = torch.tensor([[300.0, 300.0], [300.0, 300.0], [-300.0, -300.0]], requires_grad=True)
    loss = create_loss("dtsh", margin=0.0, distance="neg-half-inner")
    triplets = Triplets(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 2]))
    bad = Triplets(torch.tensor([0]), torch.tensor([2]), torch.tensor([1]))  # wrong way round
    for t, expected in ((triplets, 0.0), (bad, 180000.0)):
        out = loss(loss.distance.matrix(u), t)
        assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(expected, abs=1e-3)
        out.loss.backward()
        assert torch.isfinite(u.grad).all()
        u.grad = None


def test_regularizers() -> None:
    from deephash.hashing.regularizers import balance, get_regularizer, quantization

    u = torch.tensor([[0.5, -1.0, 0.0], [1.0, -0.25, -2.0]])
    # targets sign(u) = [[1,-1,1],[1,-1,-1]]: row errors 0.25 + 0 + 1 = 1.25 and 0 + 0.5625 + 1
    assert quantization(u).item() == pytest.approx((1.25 + 1.5625) / 2)
    assert balance(u).item() == pytest.approx(0.75**2 + 0.625**2 + 1.0**2)  # summed over bits
    assert get_regularizer("balance") is balance
    from deephash.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown regulariser"):
        get_regularizer("sparsity")
