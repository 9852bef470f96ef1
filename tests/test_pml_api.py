"""Losses and miners called as pytorch-metric-learning's are, with PML as the oracle both
ways: our losses on PML miners' tuples, PML's losses on our miners' tuples."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from deephash.errors import ConfigError
from deephash.losses import LOSSES, batch_loss, create_loss, loss_traits, miners_for
from deephash.miners import MINERS, MiningBatch, Pairs, Triplets, create_miner, label_masks

#: labels every miner finds tuples in, the offline ones included: the batch's thirds
#: ``[a | p | n]`` form four valid triplets, its halves ``[first | second]`` two positive and
#: four negative pairs
LABELS = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0, 1, 2, 0, 1])


def batch(seed: int, normalize: bool = True, n: int = 12,
          dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    x = torch.nn.functional.normalize(x, dim=1) if normalize else x
    return x.requires_grad_(), (LABELS if n == len(LABELS) else torch.arange(n) % 3)


def a_loss(name: str, x: torch.Tensor) -> torch.nn.Module:
    return create_loss(name, margin=0.5, num_classes=3, embedding_dim=x.shape[1]).to(x.dtype)


# --- our losses, called as PML's -----------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_scores_a_batch_as_pml_losses_do(name: str) -> None:
    """``loss(embeddings, labels)``: a scalar with a gradient; a metric loss scores every
    valid tuple (what batch-all or all-pairs mine), a whole-batch loss the batch (what the
    trainer computes), and refuses an ``indices_tuple``."""
    x, labels = batch(0)
    x = torch.tanh(x)  # codes in (-1, 1) for CSQ; any embedding for the others
    loss = a_loss(name, x)
    value = loss(x, labels)
    assert value.dim() == 0 and torch.isfinite(value) and value.requires_grad
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all()
    traits = loss_traits(name)
    everything = create_miner("all-pairs" if "pairs" in traits.accepts else "batch-all", 0.0)
    expected = batch_loss(loss, everything, x, labels)
    torch.testing.assert_close(value, expected.loss)
    assert loss.output(x, labels).n_items == expected.n_items > 0
    if not traits.uses_miner:
        with pytest.raises(ConfigError, match=f"the {name} loss scores every image of the batch "
                                              "and takes no indices_tuple"):
            loss(x, labels, (torch.tensor([0]), torch.tensor([3]), torch.tensor([1])))


TRAINED_PAIRS = [(loss, miner) for loss in LOSSES.names() if loss_traits(loss).uses_miner
                 for miner in miners_for(loss)]


@pytest.mark.parametrize(("loss_name", "miner_name"), TRAINED_PAIRS)
def test_a_miners_tuples_give_the_loss_the_trainer_computes(loss_name: str,
                                                            miner_name: str) -> None:
    """``loss(x, labels, miner(x, labels))`` is the trainer's ``batch_loss`` with that miner
    (same margin, same distance, same seed), for every loss and every miner it takes."""
    x, labels = batch(1)
    loss = a_loss(loss_name, x)
    tuples = create_miner(miner_name, 0.5, seed=3)(x, labels, distance=loss.distance)
    expected = batch_loss(loss, create_miner(miner_name, 0.5, seed=3), x, labels)
    assert expected.n_items > 0
    torch.testing.assert_close(loss(x, labels, tuples), expected.loss)


# --- our miners, returning PML's tuples ----------------------------------------------------


@pytest.mark.parametrize("name", MINERS.names())
def test_every_miner_returns_pml_index_tuples_that_pml_losses_take(name: str) -> None:
    """A plain tuple of int64 positions, three parts (triplets) or four (pairs), every
    tuple valid for the labels; PML's triplet loss on them equals ours, pairs included
    (PML forms their triplets as ours does), and PML's contrastive loss takes them."""
    x, labels = batch(2)
    miner = create_miner(name, 0.5)
    tuples = miner(x, labels)
    positive, negative = label_masks(labels)
    assert type(tuples) is tuple and len(tuples) == (3 if miner.yields == "triplets" else 4)
    assert all(part.dtype == torch.int64 and part.dim() == 1 for part in tuples)
    assert len(tuples[0]) > 0
    if len(tuples) == 3:
        a, p, n = tuples
        assert positive[a, p].all() and negative[a, n].all()
    else:
        a1, p, a2, n = tuples
        assert positive[a1, p].all() and negative[a2, n].all() and len(a2) > 0
    pml = pml_losses.TripletMarginLoss(margin=0.5, distance=LpDistance(normalize_embeddings=False),
                                       reducer=pml_reducers.MeanReducer())
    ours = create_loss("facenet", 0.5)
    torch.testing.assert_close(ours(x, labels, tuples), pml(x, labels, indices_tuple=tuples))
    contrastive = pml_losses.ContrastiveLoss()(x, labels, indices_tuple=tuples)
    assert torch.isfinite(contrastive)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_a_miner_mines_with_the_given_distance_without_gradients(distance: str) -> None:
    """Batch-hard's farthest positive and nearest negative, per anchor, by brute force
    under the distance given (a name or a distance object)."""
    x, labels = batch(3, normalize=False)
    d = (torch.cdist(x, x) if distance == "euclidean" else
         1 - torch.nn.functional.cosine_similarity(x[:, None], x[None, :], dim=2)).detach()
    positive, negative = label_masks(labels)
    expected = (torch.arange(12), d.masked_fill(~positive, -1).argmax(1),
                d.masked_fill(~negative, 9).argmin(1))
    miner = create_miner("batch-hard", 0.0)
    loss = create_loss("facenet", 0.0, distance)
    for given in (distance, loss.distance):
        mined = miner(x, labels, distance=given)
        assert all(torch.equal(u, v) for u, v in zip(mined, expected, strict=True))
        assert not any(part.requires_grad for part in mined)


# --- our losses on PML miners' tuples, against PML's equivalent losses ---------------------


def pml_miner(kind: str) -> object:
    lp = LpDistance(normalize_embeddings=False)
    return {"semihard": pml_miners.TripletMarginMiner(0.3, "semihard", distance=lp),
            "hard": pml_miners.TripletMarginMiner(0.3, "hard", distance=lp),
            "batch-hard": pml_miners.BatchHardMiner(distance=lp),
            "multi-similarity": pml_miners.MultiSimilarityMiner(),  # pairs
            "pair-margin": pml_miners.PairMarginMiner(0.2, 0.8, distance=lp),  # pairs
            "none": None}[kind]


EQUIVALENTS = {
    # ours, PML's, the embeddings PML is given
    "facenet-euclidean": (
        lambda: create_loss("facenet", 0.3, "euclidean", "mean_active"),
        lambda: pml_losses.TripletMarginLoss(0.3, distance=LpDistance(normalize_embeddings=False)),
        lambda x: x),
    "facenet-cosine-mean": (
        lambda: create_loss("facenet", 0.3, "cosine", "mean"),
        lambda: pml_losses.TripletMarginLoss(0.3, distance=CosineSimilarity(),
                                             reducer=pml_reducers.MeanReducer()),
        lambda x: x),
    "facenet-sum": (
        lambda: create_loss("facenet", 0.3, "euclidean", "sum"),
        lambda: pml_losses.TripletMarginLoss(0.3, distance=LpDistance(normalize_embeddings=False),
                                             reducer=pml_reducers.SumReducer()),
        lambda x: x),
    # DTSH: softplus(θ_an - θ_ap + α), θ = u·v / 2, is PML's smooth triplet loss of the
    # inner products of u / √2
    "dtsh": (
        lambda: create_loss("dtsh", 0.5, "neg-half-inner", "mean"),
        lambda: pml_losses.TripletMarginLoss(0.5, smooth_loss=True,
                                             distance=DotProductSimilarity(
                                                 normalize_embeddings=False),
                                             reducer=pml_reducers.MeanReducer()),
        lambda x: x / math.sqrt(2.0)),
}


@pytest.mark.parametrize("mined_by", ["semihard", "hard", "batch-hard", "multi-similarity",
                                      "pair-margin", "none"])
@pytest.mark.parametrize("equivalent", list(EQUIVALENTS))
def test_our_losses_on_pml_tuples_equal_pml_losses(equivalent: str, mined_by: str) -> None:
    x, labels = batch(4, n=16, dim=6)
    make_ours, make_pml, pml_input = EQUIVALENTS[equivalent]
    ours, pml = make_ours(), make_pml()
    miner = pml_miner(mined_by)
    tuples = None if miner is None else miner(x, labels)
    expected = pml(pml_input(x), labels, indices_tuple=tuples)
    got = ours(x, labels, tuples)
    torch.testing.assert_close(got, expected)
    (grad,) = torch.autograd.grad(got, x)
    (pml_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(grad, pml_grad)


def test_contrastive_on_pml_pairs_is_the_mean_over_the_given_pairs() -> None:
    """PML's ContrastiveLoss is another formula (unsquared, pairs averaged by kind), so
    ours is checked on PML's pairs against a loop; without tuples it scores every pair,
    as it does on PML's all-pairs tuple (each unordered pair twice)."""
    x, labels = batch(5, n=16)
    loss = create_loss("contrastive", margin=1.2)
    tuples = pml_miners.MultiSimilarityMiner()(x, labels)
    a1, p, a2, n = (part.tolist() for part in tuples)
    y = x.detach()
    values = [0.5 * float((y[i] - y[j]).norm()) ** 2 for i, j in zip(a1, p, strict=True)]
    values += [0.5 * max(0.0, 1.2 - float((y[i] - y[j]).norm())) ** 2
               for i, j in zip(a2, n, strict=True)]
    assert loss(x, labels, tuples).item() == pytest.approx(sum(values) / len(values), rel=1e-9)
    torch.testing.assert_close(loss(x, labels), loss(x, labels, lmu.get_all_pairs_indices(labels)))


def test_pml_losses_without_tuples_score_what_our_all_tuple_miners_mine() -> None:
    """PML's default (every triplet, every pair) is exactly our batch-all and all-pairs."""
    x, labels = batch(6, n=16)
    for pml, miner in ((pml_losses.TripletMarginLoss(0.4), "batch-all"),
                       (pml_losses.ContrastiveLoss(), "all-pairs")):
        ours = create_miner(miner, 0.0)(x, labels)
        torch.testing.assert_close(pml(x, labels, indices_tuple=ours), pml(x, labels))


# --- tuples in and out, and bad input --------------------------------------------------------


def test_tuples_round_trip_and_pairs_become_triplets_as_in_pml() -> None:
    from deephash.miners import from_indices_tuple, triplets_of

    def same(u: tuple[torch.Tensor, ...], v: tuple[torch.Tensor, ...]) -> bool:
        u, v = tuple(u), tuple(v)  # the parts (a Triplets's len is its number of triplets)
        return len(u) == len(v) and all(torch.equal(a, b) for a, b in zip(u, v, strict=True))

    cpu = torch.device("cpu")
    triplets = Triplets(torch.tensor([0, 1]), torch.tensor([3, 5]), torch.tensor([1, 2]))
    read = from_indices_tuple([t.int() for t in triplets.indices_tuple()], 6, cpu)  # int32, list
    assert isinstance(read, Triplets) and same(read, triplets) and read.anchor.dtype == torch.int64
    pairs = Pairs(torch.tensor([0, 0, 1, 0, 2]), torch.tensor([3, 4, 5, 1, 1]),
                  torch.tensor([True, True, True, False, False]))
    read = from_indices_tuple(pairs.indices_tuple(), 6, cpu)
    assert isinstance(read, Pairs) and same(read, pairs)
    expected = lmu.convert_to_triplets(pairs.indices_tuple(), torch.zeros(6))
    assert same(triplets_of(pairs), expected)
    assert [t.tolist() for t in triplets_of(pairs)] == [[0, 0], [3, 4], [1, 1]]


def test_an_empty_tuple_gives_a_zero_loss_with_a_gradient_path() -> None:
    x, labels = batch(7)
    none = torch.empty(0, dtype=torch.long)
    for name, tuples in (("facenet", (none, none, none)), ("contrastive", (none,) * 4)):
        value = create_loss(name, 0.5)(x, labels, tuples)
        assert value.item() == 0.0
        (grad,) = torch.autograd.grad(value, x)
        assert torch.all(grad == 0)


@pytest.mark.parametrize(("tuples", "message"), [
    ((torch.tensor([0]), torch.tensor([3]),), "must be \\(anchors, positives, negatives\\)"),
    ((torch.tensor([0]), torch.tensor([3]), torch.tensor([12])), "position 12 in a batch of 12"),
    ((torch.tensor([0]), torch.tensor([3]), torch.tensor([-1])), "position -1 in a batch of 12"),
    ((torch.tensor([0.0]), torch.tensor([3]), torch.tensor([1])), "integer tensors"),
    ((torch.tensor([0, 1]), torch.tensor([3]), torch.tensor([1])), "differ in length"),
    ((torch.tensor([0]), torch.tensor([3]), torch.tensor([1, 2]), torch.tensor([1])),
     "differ in length"),
])
def test_bad_index_tuples_are_refused_in_one_line(tuples: tuple[torch.Tensor, ...],
                                                  message: str) -> None:
    x, labels = batch(8)
    with pytest.raises(ConfigError, match=message):
        create_loss("facenet", 0.5)(x, labels, tuples)


def test_bad_batches_are_refused_in_one_line() -> None:
    x, labels = batch(9)
    loss, miner = create_loss("facenet", 0.5), create_miner("batch-hard", 0.5)
    for call in (lambda: loss(x[0], labels), lambda: miner(x[0], labels)):
        with pytest.raises(ConfigError, match=r"embeddings must be a \(B, D\) tensor"):
            call()
    for call in (lambda: loss(x, labels[:5]), lambda: miner(x, labels[:5])):
        with pytest.raises(ConfigError, match=r"labels of shape \(5,\) for 12 embeddings"):
            call()
    with pytest.raises(ConfigError, match="the facenet loss trains on triplets; a pair miner"):
        loss(loss.distance.matrix(x), create_miner("all-pairs", 0.0).mine(
            MiningBatch(torch.cdist(x, x).detach(), labels, x.detach())))
    with pytest.raises(ConfigError, match="the softmax loss scores whole batches"):
        a_loss("softmax", x)(torch.cdist(x, x), Triplets.empty(x.device))


def test_multi_hot_labels_are_mined_and_scored_alike() -> None:
    """``(B, C)`` multi-hot rows with one label each give what their class ids give."""
    x, labels = batch(10)
    multi_hot = torch.nn.functional.one_hot(labels, 3).bool()
    for name in ("facenet", "contrastive", "dpsh"):
        loss = a_loss(name, x)
        torch.testing.assert_close(loss(x, multi_hot), loss(x, labels))
    miner = create_miner("semi-hard", 0.5)
    assert all(torch.equal(u, v) for u, v in zip(miner(x, multi_hot), miner(x, labels),
                                                  strict=True))
