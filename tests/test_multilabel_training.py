"""Training on multi-label data: the P x K sampler, every miner, the losses, DTSH, offline
tuples, Zhuang et al., the classifier (sigmoid + BCE), the trainer, validation and the
refusals, each against a brute-force reference on small random multi-hot labels; and the
single-label paths unchanged (the same batches and triplets as before label sets)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_frequencies, tiny_training_setup

from deephash.data.tuples import TupleSource, draw_triplets, relevant_counts
from deephash.errors import ConfigError, DataError
from deephash.hashing.zhuang import sample_triplets
from deephash.labels import LabelSet, relevance
from deephash.losses import SoftmaxLoss, create_loss
from deephash.losses.distances import EuclideanDistance
from deephash.metrics import evaluate_retrieval
from deephash.metrics.evaluate import EvaluationSpec
from deephash.miners import MiningBatch, Triplets, create_miner, label_masks, miner_names
from deephash.training import label_support
from deephash.training.checkpoint import read_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig, ZhuangConfig
from deephash.training.evaluation import validation_scores
from deephash.training.inputs import FeatureInputs
from deephash.training.label_support import check_labels_supported, has_negative_pair
from deephash.training.model import build_model
from deephash.training.offline import OfflineSampler
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.trainer import TrainingSetup, batch_loss, fit, validate
from deephash.training.zhuang_trainer import fit_zhuang
from tests.test_trainer import saver

MARGIN = 0.25


# -- random multi-label data and the brute-force relevance -----------------------------------

def random_lists(seed: int, n: int, n_classes: int = 6, most: int = 3,
                 unlabelled: float = 0.0) -> list[list[int]]:
    """``n`` label lists of 1..``most`` distinct classes each (a share of them empty)."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(n):
        if rng.random() < unlabelled:
            lists.append([])
            continue
        size = int(rng.integers(1, most + 1))
        lists.append(sorted(rng.choice(n_classes, size, replace=False).tolist()))
    return lists


def shares(a: list[int], b: list[int]) -> bool:
    return bool(set(a) & set(b))


def hot(lists: list[list[int]], n_classes: int = 6) -> torch.Tensor:
    rows = torch.zeros(len(lists), n_classes, dtype=torch.bool)
    for i, row in enumerate(lists):
        rows[i, row] = True
    return rows


def is_positive(lists: list[list[int]], a: int, p: int) -> bool:
    return a != p and shares(lists[a], lists[p])


def is_negative(lists: list[list[int]], a: int, n: int) -> bool:
    return bool(lists[a]) and bool(lists[n]) and not shares(lists[a], lists[n])


def multi_batch(seed: int, n: int = 12, dim: int = 5, normalize: bool = False,
                unlabelled: float = 0.0) -> tuple[MiningBatch, list[list[int]]]:
    lists = random_lists(seed, n, most=2, unlabelled=unlabelled)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    if normalize:
        x = F.normalize(x, dim=1)
    return MiningBatch(EuclideanDistance().matrix(x), hot(lists), x), lists


def as_list(triplets: tuple[torch.Tensor, ...]) -> list[tuple[int, int, int]]:
    return list(zip(*(t.tolist() for t in triplets), strict=True))


# -- the P x K sampler -----------------------------------------------------------------------

def old_balanced_epoch(labels: np.ndarray, p: int, k: int, seed: int, epoch: int,
                       batches: int) -> list[np.ndarray]:
    """The sampler before label sets, transcribed: the single-label reference."""
    rng = np.random.default_rng([seed, epoch])
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    queues = {c: rng.permutation(items) for c, items in members.items()}
    heads = dict.fromkeys(members, 0)
    out = []
    for _ in range(batches):
        batch = []
        for c in rng.choice(classes, p, replace=False):
            items = members[int(c)]
            if len(items) < k:
                batch.append(rng.choice(items, k, replace=True))
                continue
            if heads[int(c)] + k > len(items):
                queues[int(c)], heads[int(c)] = rng.permutation(items), 0
            batch.append(queues[int(c)][heads[int(c)]:heads[int(c)] + k])
            heads[int(c)] += k
        out.append(np.concatenate(batch))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_single_label_batches_are_those_of_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 90)
    labels[:3] = 4  # class 4 has 3 images, fewer than K: drawn with replacement
    for form in (labels, LabelSet.from_ids(labels),
                 LabelSet.from_multi_hot(np.eye(5, dtype=bool)[labels])):
        sampler = BalancedBatchSampler(form, 3, 4, seed=seed)
        assert len(sampler) == 90 // 12
        for epoch in (0, 3):
            got = list(sampler.epoch(epoch))
            expected = old_balanced_epoch(labels, 3, 4, seed, epoch, len(sampler))
            assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("seed", range(3))
def test_multi_label_batches_give_every_position_a_positive(seed: int) -> None:
    lists = random_lists(seed, 80, unlabelled=0.15)
    labels = LabelSet.from_lists(lists, 6)
    assert not labels.is_single
    sampler = BalancedBatchSampler(labels, n_classes=3, n_samples=4, seed=seed)
    assert len(sampler) == int(labels.labelled.sum()) // 12  # labelled images per epoch
    members = {c: {i for i, row in enumerate(lists) if c in row} for c in range(6)}
    for epoch in range(2):
        batches = list(sampler.epoch(epoch))
        assert all(np.array_equal(a, b) for a, b in zip(batches, sampler.epoch(epoch),
                                                          strict=True))
        for batch in batches:
            assert batch.shape == (12,)
            assert all(lists[i] for i in batch)  # never an unlabelled image
            blocks = batch.reshape(3, 4)
            # each block holds K members of one class, three distinct classes
            block_classes = [[c for c in range(6) if set(b.tolist()) <= members[c]]
                             for b in blocks]
            assert all(block_classes)
            assert all(len(set(b.tolist())) == 4 for b in blocks)  # no small class here
            for position, item in enumerate(batch):  # a positive for every anchor
                assert any(shares(lists[item], lists[other])
                           for j, other in enumerate(batch) if j != position)
            relevant = relevance(labels[batch], labels[batch])
            assert relevant[~np.eye(12, dtype=bool)].reshape(12, 11).any(axis=1).all()


def test_an_image_with_two_chosen_classes_may_fill_two_positions() -> None:
    # image 0 has both classes; each class has 2 members, so every batch of P = 2, K = 2
    # takes image 0 for both classes: positions 0 and 2 (not deduplicated)
    lists = [[0, 1], [0], [1], [2], [2]]
    sampler = BalancedBatchSampler(LabelSet.from_lists(lists), 2, 2, seed=0,
                                   batches_per_epoch=20)
    repeated = [batch for batch in sampler.epoch(0) if len(set(batch.tolist())) < 4]
    assert repeated and all(Counter(b.tolist())[0] == 2 for b in repeated)


def test_unlabelled_images_are_never_sampled() -> None:
    ids = np.array([0, -1, 0, 1, -1, 1, 0, 1, -1, 2, 2])
    sampler = BalancedBatchSampler(ids, 2, 2, seed=3, batches_per_epoch=30)
    seen = np.concatenate(list(sampler.epoch(0)))
    assert set(seen.tolist()) == {0, 2, 3, 5, 6, 7, 9, 10}
    assert sorted(sampler.members) == [0, 1, 2]


def test_multi_label_sampler_refusals() -> None:
    everyone = LabelSet.from_lists([[0, 1], [0], [0, 2], [1, 0], [2, 0]])
    with pytest.raises(ConfigError, match="every two training images share a label"):
        BalancedBatchSampler(everyone, 2, 2, seed=0)
    BalancedBatchSampler(everyone, 2, 2, seed=0, needs_positives=False)  # the classifier
    lonely = LabelSet.from_lists([[0, 1], [0], [1], [0, 2]], 3)  # class 2: one image
    with pytest.raises(ConfigError, match="class 'c' has 1 training image"):
        BalancedBatchSampler(lonely, 2, 2, seed=0, class_names=["a", "b", "c"])


# -- the miners ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_label_masks_are_relevance_and_for_ids_what_they_were(seed: int) -> None:
    batch, lists = multi_batch(seed, unlabelled=0.2)
    positive, negative = label_masks(batch.labels)
    n = len(lists)
    assert positive.tolist() == [[is_positive(lists, a, b) for b in range(n)] for a in range(n)]
    assert negative.tolist() == [[is_negative(lists, a, b) for b in range(n)] for a in range(n)]
    ids = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    same = ids[:, None] == ids[None, :]
    positive, negative = label_masks(ids)
    assert torch.equal(positive, same & ~torch.eye(n, dtype=torch.bool))
    assert torch.equal(negative, ~same)


@pytest.mark.parametrize("seed", range(3))
def test_batch_all_is_every_valid_multi_label_triplet_in_order(seed: int) -> None:
    batch, lists = multi_batch(seed, unlabelled=0.1)
    expected = [(a, p, n) for a, p, n in itertools.product(range(len(lists)), repeat=3)
                if is_positive(lists, a, p) and is_negative(lists, a, n)]
    assert expected and as_list(create_miner("batch-all", MARGIN).mine(batch)) == expected


@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_on_multi_labels_against_brute_force(seed: int) -> None:
    batch, lists = multi_batch(seed)
    d, n = batch.distances, len(lists)
    expected = []
    for a in range(n):
        pos = [p for p in range(n) if is_positive(lists, a, p)]
        neg = [q for q in range(n) if is_negative(lists, a, q)]
        if pos and neg:
            expected.append((a, max(pos, key=lambda p: (d[a, p], -p)),
                             min(neg, key=lambda q: (d[a, q], q))))
    assert expected and as_list(create_miner("batch-hard", MARGIN).mine(batch)) == expected


def windows(batch: MiningBatch, lists: list[list[int]], lower: bool
            ) -> dict[tuple[int, int], list[int]]:
    """Each positive pair's negatives with d_an < d_ap + m (and d_an > d_ap: semi-hard)."""
    d, n, found = batch.distances, len(lists), {}
    for a, p in itertools.product(range(n), repeat=2):
        if is_positive(lists, a, p):
            window = [q for q in range(n) if is_negative(lists, a, q)
                      and d[a, q] < d[a, p] + MARGIN and (not lower or d[a, q] > d[a, p])]
            if window:
                found[(a, p)] = window
    return found


@pytest.mark.parametrize("seed", range(3))
def test_pair_negative_miners_on_multi_labels_against_brute_force(seed: int) -> None:
    batch, lists = multi_batch(seed, n=14)
    d = batch.distances
    semi = windows(batch, lists, lower=True)
    assert as_list(create_miner("semi-hard", MARGIN).mine(batch)) == [
        (a, p, min(w, key=lambda q: (d[a, q], q))) for (a, p), w in semi.items()]
    violating = windows(batch, lists, lower=False)
    assert violating
    mined = as_list(create_miner("random-hard", MARGIN, seed=seed).mine(batch))
    assert [(a, p) for a, p, _ in mined] == list(violating)
    assert all(q in violating[(a, p)] for a, p, q in mined)
    curriculum = create_miner("curriculum", MARGIN)
    for hardness, pick in ((1.0, min), (0.0, max)):
        curriculum.set_progress(hardness)
        got = as_list(curriculum.mine(batch))
        expected = [(a, p, pick(w, key=lambda q: (d[a, q], q if pick is min else -q)))
                    for (a, p), w in violating.items()]
        assert [(a, p) for a, p, _ in got] == [(a, p) for a, p, _ in expected]
        assert [float(d[a, q]) for a, p, q in got] == [float(d[a, q]) for a, p, q in expected]


def test_distance_weighted_on_multi_labels_draws_a_valid_negative_per_positive_pair() -> None:
    batch, lists = multi_batch(5, n=14, dim=8, normalize=True)
    d, n = batch.distances, len(lists)
    usable = {a for a in range(n)
              if any(is_negative(lists, a, q) and d[a, q] < 1.4 for q in range(n))}
    expected = [(a, p) for a, p in itertools.product(range(n), repeat=2)
                if a in usable and is_positive(lists, a, p)]
    mined = as_list(create_miner("distance-weighted", MARGIN, seed=1).mine(batch))
    assert expected and [(a, p) for a, p, _ in mined] == expected
    assert all(is_negative(lists, a, q) and d[a, q] < 1.4 for a, p, q in mined)


@pytest.mark.parametrize("seed", range(3))
def test_pair_miners_on_multi_labels_against_brute_force(seed: int) -> None:
    batch, lists = multi_batch(seed, n=14, unlabelled=0.1)
    pairs = list(itertools.combinations(range(len(lists)), 2))
    positives = [(i, j) for i, j in pairs if is_positive(lists, i, j)]
    negatives = [(i, j) for i, j in pairs if is_negative(lists, i, j)]

    def mined(name: str) -> set[tuple[int, int, bool]]:
        got = create_miner(name, 0.0).mine(batch)
        return set(zip(got.first.tolist(), got.second.tolist(), got.same.tolist(),
                       strict=True))

    assert mined("all-pairs") == ({(i, j, True) for i, j in positives}
                                  | {(i, j, False) for i, j in negatives})
    d = batch.distances
    hardest = sorted(negatives, key=lambda ij: (float(d[ij]), ij))[: len(positives)]
    assert mined("hard-pairs") == ({(i, j, True) for i, j in positives}
                                   | {(i, j, False) for i, j in hardest})


def test_offline_miners_read_multi_label_layouts() -> None:
    # triplets (0, 2, 4) valid, (1, 3, 5) not (the negative shares class 2 with the anchor)
    lists = [[0, 1], [2], [1, 3], [2, 4], [4], [2, 5]]
    batch = MiningBatch(torch.zeros(6, 6), hot(lists), torch.zeros(6, 2))
    got = create_miner("offline", MARGIN).mine(batch)
    assert as_list(got) == [(0, 2, 4)]
    pairs = create_miner("offline-pairs", MARGIN).mine(batch)  # (0, 3), (1, 4), (2, 5)
    assert pairs.first.tolist() == [0, 1, 2] and pairs.second.tolist() == [3, 4, 5]
    assert pairs.same.tolist() == [shares(lists[i], lists[i + 3]) for i in range(3)]


@pytest.mark.parametrize("name", miner_names("triplets"))
def test_multi_label_batches_without_negatives_give_no_triplets(name: str) -> None:
    lists = [[0], [0, 1], [1, 0], [0, 2], []]  # all share class 0; one unlabelled
    x = F.normalize(torch.randn(5, 4), dim=1)
    batch = MiningBatch(EuclideanDistance().matrix(x), hot(lists), x)
    assert len(create_miner(name, MARGIN).mine(batch)) == 0


# -- the losses ------------------------------------------------------------------------------

def loss_case(seed: int) -> tuple[torch.Tensor, list[list[int]]]:
    lists = random_lists(seed, 10, most=2)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True), lists


@pytest.mark.parametrize("name", ["facenet", "hoffer", "dtsh"])
def test_triplet_losses_on_multi_labels_against_a_loop(name: str) -> None:
    x, lists = loss_case(1)
    distance = "neg-half-inner" if name == "dtsh" else "euclidean"
    loss = create_loss(name, margin=0.5, distance=distance, reduction="mean")
    out = batch_loss(loss, create_miner("batch-all", 0.5), x, hot(lists))
    u = x.detach()

    def dist(i: int, j: int) -> float:
        if name == "dtsh":
            return -0.5 * float(u[i] @ u[j])  # d = -θ, θ = u_i·u_j / 2
        return float((u[i] - u[j]).norm())

    values = []
    for a, p, n in itertools.product(range(len(lists)), repeat=3):
        if is_positive(lists, a, p) and is_negative(lists, a, n):
            d_ap, d_an = dist(a, p), dist(a, n)
            if name == "facenet":
                values.append(max(0.0, d_ap - d_an + 0.5))
            elif name == "dtsh":
                values.append(math.log1p(math.exp(d_ap - d_an + 0.5)))
            else:
                plus = math.exp(d_ap) / (math.exp(d_ap) + math.exp(d_an))
                values.append(2 * plus ** 2)
    assert out.n_items == len(values) > 0
    assert out.loss.item() == pytest.approx(sum(values) / len(values), rel=1e-9)
    out.loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_contrastive_loss_on_multi_labels_against_a_loop() -> None:
    x, lists = loss_case(2)
    out = batch_loss(create_loss("contrastive", 1.5, reduction="mean"),
                     create_miner("all-pairs", 0.0), x, hot(lists))
    values = []
    for i, j in itertools.combinations(range(len(lists)), 2):
        d = float((x[i] - x[j]).detach().norm())
        if is_positive(lists, i, j):
            values.append(0.5 * d * d)
        elif is_negative(lists, i, j):
            values.append(0.5 * max(0.0, 1.5 - d) ** 2)
    assert out.n_items == len(values)
    assert out.loss.item() == pytest.approx(sum(values) / len(values), rel=1e-9)


# -- the classifier: sigmoid and binary cross-entropy ----------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_classifier_on_multi_hot_labels_is_bce_against_a_loop(reduction: str) -> None:
    torch.manual_seed(0)
    loss = create_loss("softmax", 0.0, reduction=reduction, num_classes=6, embedding_dim=4)
    assert isinstance(loss, SoftmaxLoss)
    loss.double()
    x = torch.randn(9, 4, dtype=torch.float64)
    lists = random_lists(3, 9, most=3)
    out = loss.compute(x, hot(lists))
    logits = loss.classifier(x).detach()
    values, wrong = [], 0
    for row, labels in zip(logits.tolist(), lists, strict=True):
        # binary_cross_entropy_with_logits by hand: max(z, 0) - z y + log(1 + e^-|z|)
        terms = [max(z, 0.0) - z * (c in labels) + math.log1p(math.exp(-abs(z)))
                 for c, z in enumerate(row)]
        values.append(sum(terms) / len(terms))
        wrong += int(max(range(6), key=lambda c: row[c]) not in labels)
    expected = sum(values) if reduction == "sum" else sum(values) / len(values)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    if reduction == "mean":
        reference = F.binary_cross_entropy_with_logits(logits, hot(lists).double())
        assert out.loss.item() == pytest.approx(reference.item(), rel=1e-12)
    assert out.n_items == 9 and out.n_active == wrong
    out.loss.backward()
    assert loss.classifier.weight.grad is not None
    with pytest.raises(ConfigError, match="5 classes for a classifier of 6"):
        loss.compute(x, hot(lists)[:, :5])


def test_classifier_accuracy_counts_a_predicted_class_among_the_labels() -> None:
    torch.manual_seed(1)
    loss = create_loss("softmax", 0.0, num_classes=6, embedding_dim=4)
    assert isinstance(loss, SoftmaxLoss)
    x = torch.randn(40, 4)
    predicted = loss.predict(x).tolist()
    lists = random_lists(4, 40, unlabelled=0.1)
    hits = [predicted[i] in lists[i] for i in range(40)]
    assert loss.accuracy(x, LabelSet.from_lists(lists, 6)) == pytest.approx(np.mean(hits))
    ids = np.random.default_rng(0).integers(0, 6, 40)
    assert loss.accuracy(x, ids) == float((np.array(predicted) == ids).mean())  # as before


# -- offline tuples and Zhuang et al. --------------------------------------------------------

def test_offline_sampler_on_multi_labels_lays_out_valid_blocks() -> None:
    lists = random_lists(6, 40, unlabelled=0.2)
    sampler = OfflineSampler(LabelSet.from_lists(lists, 6), tuples_per_batch=5, seed=1,
                             batches_per_epoch=4)
    batches = list(sampler.epoch(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, sampler.epoch(0), strict=True))
    for batch in batches:
        for a, p, n in batch.reshape(3, 5).T:
            assert is_positive(lists, a, p) and is_negative(lists, a, n)
    pairs = OfflineSampler(LabelSet.from_lists(lists, 6), 5, seed=1, tuple_size=2)
    for batch in pairs.epoch(0):
        first, second = batch.reshape(2, 5)
        assert all(lists[i] and lists[j] and i != j for i, j in zip(first, second,
                                                                     strict=True))


@pytest.mark.parametrize("lists", [random_lists(7, 30, unlabelled=0.1),
                                   [[y] for y in [2, 0, 2, 1, 0, 2, 3, 0, 2]]],
                         ids=["multi", "single"])
def test_a_tuple_source_draws_what_the_functions_draw(lists: list[list[int]]) -> None:
    labels = LabelSet.from_lists(lists)
    source = TupleSource(labels)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):  # the tables built once serve every draw
        assert np.array_equal(source.triplets(20, rng_a), draw_triplets(labels, 20, rng_b))


def test_relevant_counts_against_a_loop() -> None:
    lists = random_lists(8, 50, unlabelled=0.1)
    expected = [sum(shares(a, b) for b in lists) for a in lists]
    assert relevant_counts(LabelSet.from_lists(lists, 6)).tolist() == expected


def old_sample_triplets(labels: np.ndarray, per_anchor: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Zhuang et al.'s sampling before label sets, transcribed: the single-label reference."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    sizes = np.searchsorted(sorted_labels, sorted_labels, side="right") - starts
    usable = (sizes >= 2) & (sizes < len(labels))
    anchors = np.repeat(np.flatnonzero(usable), per_anchor)
    lo, size = starts[anchors], sizes[anchors]
    offset = rng.integers(0, size - 1)
    positives = lo + offset + (lo + offset >= anchors)
    pick = rng.integers(0, len(labels) - size)
    negatives = np.where(pick < lo, pick, pick + size)
    return np.stack([order[anchors], order[positives], order[negatives]], axis=1)


def assert_uniform(counts: Counter, outcomes: list[int], draws: int) -> None:
    if len(outcomes) == 1:  # certain: no spread to test within
        assert counts == {outcomes[0]: draws}
    else:
        assert_frequencies(counts, dict.fromkeys(outcomes, 1 / len(outcomes)), draws)


@pytest.mark.parametrize("seed", range(3))
def test_zhuang_single_label_triplets_are_those_of_before(seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 5, 60)
    assert np.array_equal(sample_triplets(labels, 4, np.random.default_rng(seed)),
                          old_sample_triplets(labels, 4, np.random.default_rng(seed)))


def test_zhuang_triplets_on_multi_labels() -> None:
    lists = [[0, 1], [1], [2], [0], [], [2, 3], [3], [0, 1, 2, 3], [4]]
    # item 4 is unlabelled (takes no part); item 8 (class 4 alone) has no positive, so it
    # never anchors, but it is the one negative of item 7, which has every other class
    per_anchor = 3000
    triplets = sample_triplets(LabelSet.from_lists(lists), per_anchor,
                               np.random.default_rng(0))
    eligible = [a for a in range(len(lists))
                if any(is_positive(lists, a, p) for p in range(len(lists)))
                and any(is_negative(lists, a, n) for n in range(len(lists)))]
    assert Counter(triplets[:, 0].tolist()) == dict.fromkeys(eligible, per_anchor)
    assert all(is_positive(lists, a, p) and is_negative(lists, a, n) for a, p, n in triplets)
    for a in eligible:  # positive and negative uniform for each anchor
        mine = triplets[triplets[:, 0] == a]
        positives = [p for p in range(len(lists)) if is_positive(lists, a, p)]
        negatives = [n for n in range(len(lists)) if is_negative(lists, a, n)]
        assert_uniform(Counter(mine[:, 1].tolist()), positives, per_anchor)
        assert_uniform(Counter(mine[:, 2].tolist()), negatives, per_anchor)


# -- the trainer, validation and model selection ---------------------------------------------

def multi_label_features(seed: int = 0, n: int = 150, n_classes: int = 5,
                         dim: int = 16) -> dict:
    """Features = the sum of each image's class centres plus noise; 1-2 labels each."""
    rng = np.random.default_rng(seed)
    lists = random_lists(seed, n, n_classes, most=2)
    labels = LabelSet.from_lists(lists, n_classes)
    centres = rng.normal(size=(n_classes, dim)) * 1.5
    x = (labels.multi_hot.astype(np.float64) @ centres + rng.normal(size=(n, dim)))
    order = rng.permutation(n)
    return {"x": x.astype(np.float32), "labels": labels, "lists": lists,
            "val": np.sort(order[: n // 5]), "train": np.sort(order[n // 5:])}


def multi_label_setup(data: dict, loss: str = "facenet", miner: str = "batch-hard",
                      epochs: int = 3) -> tuple[TrainingSetup, TrainConfig]:
    cfg = TrainingConfig(loss=loss, miner=miner, margin=0.3, epochs=epochs, batch_classes=3,
                         batch_samples=4, hidden_dims=(32,), embedding_dim=8)
    config = TrainConfig(training=cfg, seed=0)
    torch.manual_seed(0)
    model = build_model(cfg, data["x"].shape[1], None)
    criterion = create_loss(loss, 0.3, num_classes=data["labels"].n_classes, embedding_dim=8)
    labels = data["labels"]
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(data["x"], None, 0), loss=criterion,
        miner=create_miner(miner, 0.3, 0),
        sampler=BalancedBatchSampler(labels[data["train"]], 3, 4, 0,
                                     needs_positives=criterion.uses_miner),
        labels=labels.multi_hot, train=data["train"], val=data["val"],  # a matrix is read
        optimizer=torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=5e-3),
        epochs=epochs, device=torch.device("cpu"), eval_distance="cosine")
    return setup, config


@pytest.mark.parametrize(("loss", "miner"), [("facenet", "batch-hard"),
                                             ("contrastive", "all-pairs"),
                                             ("softmax", "batch-hard")])
def test_training_on_multi_labels_selects_the_best_validation_map(
        tmp_path: Path, loss: str, miner: str) -> None:
    data = multi_label_features()
    setup, config = multi_label_setup(data, loss, miner, epochs=3)
    assert setup.labels == data["labels"]
    before, knn = validate(setup)
    assert 0 < before <= 1 and math.isnan(knn)  # no kNN accuracy on multi-label data
    history = fit(setup, tmp_path, saver(setup, config))
    maps = [h.val_map for h in history]
    assert all(0 < m <= 1 for m in maps) and all(math.isnan(h.val_knn) for h in history)
    assert all(h.empty_batches == 0 for h in history)
    assert history[-1].loss < history[0].loss
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == int(np.argmax(maps)) and best["val_map"] == max(maps)


def test_zhuang_stages_on_multi_labels(tmp_path: Path) -> None:
    data = multi_label_features(2)
    cfg = TrainingConfig(procedure="zhuang", epochs=2, batch_classes=3, batch_samples=4,
                         hidden_dims=(32,), embedding_dim=12, codes=True)
    torch.manual_seed(0)
    model = build_model(cfg, data["x"].shape[1], None)
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(data["x"], None, 0), loss=torch.nn.Module(),
        miner=None,  # type: ignore[arg-type]  # zhuang uses neither
        sampler=BalancedBatchSampler(data["labels"][data["train"]], 3, 4, 0),
        labels=data["labels"], train=data["train"], val=data["val"],
        optimizer=torch.optim.Adam(model.parameters(), lr=5e-3), epochs=2,
        device=torch.device("cpu"), eval_distance="hamming")
    stages = ZhuangConfig(triplets_per_image=3, sweeps=2, block_size=32, epochs_per_stage=2)
    history = fit_zhuang(setup, stages, 3.0, 7, tmp_path, saver(setup, TrainConfig(training=cfg)))
    eligible = sum(1 for i in data["train"] if data["lists"][i])  # all labelled, all usable
    assert [h.triplets_per_batch for h in history] == [3.0 * eligible] * 2
    assert all(0 < h.val_map <= 1 and math.isnan(h.val_knn) for h in history)
    assert all(h.mean_negative_distance > h.mean_positive_distance for h in history)


def test_a_batch_keeps_the_data_sets_label_form() -> None:
    data = multi_label_features()
    setup, _ = multi_label_setup(data)
    single = [i for i, row in enumerate(data["lists"]) if len(row) == 1][:6]
    labels = setup.batch_labels(np.array(single))  # images with one label each
    assert labels.dtype == torch.bool and labels.shape == (6, 5)
    assert labels.tolist() == hot([data["lists"][i] for i in single], 5).tolist()
    ids = np.array([2, 0, 1, 1, 0, 2])
    setup.labels = LabelSet.from_ids(ids)
    assert setup.batch_labels(np.array([1, 3])).tolist() == [0, 1]


@pytest.mark.parametrize("distance", ["cosine", "hamming"])
def test_validation_scores_on_multi_labels_read_map_and_no_knn(distance: str) -> None:
    data = multi_label_features(1)
    x, labels = data["x"], data["labels"]
    val, train = data["val"], data["train"]
    scores = validation_scores(x[val], x[train], labels[val], labels[train], distance)
    if distance == "cosine":
        spec = EvaluationSpec(knn_k=(), map_cutoffs=(), precision_k=())
        expected = evaluate_retrieval(x[val], x[train], labels[val], labels[train], "cosine",
                                      spec).metrics["map@all"]
        assert scores[0] == expected
    assert 0 < scores[0] <= 1 and math.isnan(scores[1])
    ids = np.arange(len(x)) % 3  # single-label data still has its 10-NN accuracy
    assert 0 <= validation_scores(x[val], x[train], ids[val], ids[train], distance)[1] <= 1


# -- what the labels cannot train ------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_has_negative_pair_against_a_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(label_support, "_CHUNK", 3)  # several chunks of distinct label sets
    lists = random_lists(seed, 12, n_classes=4, most=3, unlabelled=0.1)
    if seed % 2:  # half of the cases: every label set holds class 0
        lists = [sorted({0, *row}) if row else row for row in lists]
    expected = any(is_negative(lists, a, b) for a in range(12) for b in range(12))
    assert has_negative_pair(LabelSet.from_lists(lists, 4)) == expected
    assert seed % 2 or expected


def train_config(loss: str = "facenet", procedure: str = "triplet") -> TrainConfig:
    return TrainConfig(training=TrainingConfig(loss=loss, procedure=procedure))


def test_check_labels_supported() -> None:
    multi = LabelSet.from_lists(random_lists(0, 30, unlabelled=0.1), 6)
    for config in (train_config(), train_config("softmax"), train_config("dtsh"),
                   train_config(procedure="zhuang")):
        check_labels_supported(config, multi)
        check_labels_supported(config, np.array([0, 1, 1, 2]))
    with pytest.raises(DataError, match=r"^the data set has no labels: train, baseline"):
        check_labels_supported(train_config("softmax"), LabelSet.from_lists([[], []], 3))
    with pytest.raises(DataError, match="no labels"):
        check_labels_supported(train_config(), np.full(5, -1))
    everyone = LabelSet.from_lists([[0, 1], [0], [0, 2], []])
    with pytest.raises(DataError, match="so the facenet loss has no negative"):
        check_labels_supported(train_config(), everyone)
    with pytest.raises(DataError, match=r"so Zhuang et al\.'s code inference has no negative"):
        check_labels_supported(train_config(procedure="zhuang"), everyone)
    with pytest.raises(DataError, match="share a label"):
        check_labels_supported(train_config(), np.zeros((3, 2), dtype=bool) | [True, False])
    check_labels_supported(train_config("softmax"), everyone)  # the classifier trains


def test_refusals_are_one_line() -> None:
    everyone = LabelSet.from_lists([[0, 1], [0]])
    for call in (lambda: check_labels_supported(train_config(), everyone),
                 lambda: BalancedBatchSampler(everyone, 2, 2, seed=0)):
        with pytest.raises((DataError, ConfigError)) as error:
            call()
        assert "\n" not in str(error.value)


def test_mining_sees_triplets_on_every_sampled_multi_label_batch() -> None:
    lists = random_lists(9, 60)
    labels = LabelSet.from_lists(lists, 6)
    sampler = BalancedBatchSampler(labels, 3, 4, seed=2)
    miner = create_miner("batch-all", MARGIN)
    for batch in sampler.epoch(0):
        rows = torch.from_numpy(labels.multi_hot[batch])
        mined = miner.mine(MiningBatch(torch.zeros(12, 12), rows, torch.zeros(12, 2)))
        assert isinstance(mined, Triplets)
        anchors = set(mined.anchor.tolist())
        expected = {a for a in range(12) if any(is_negative(lists, batch[a], batch[n])
                                                for n in range(12))}
        assert anchors == expected  # every anchor with a negative gets its triplets


# -- the pipeline's training setup on a data set with multi-hot labels -----------------------

@pytest.mark.parametrize("loss", ["facenet", "softmax"])
def test_training_setup_reads_a_data_sets_multi_hot_labels(folder: Path, tmp_path: Path,
                                                           loss: str) -> None:
    lists = random_lists(11, 3 * (12 + 4), n_classes=3, most=2)  # the folder's 48 images
    setup, config, splits = tiny_training_setup(
        folder, tmp_path, TrainingConfig(loss=loss, miner="batch-hard", batch_classes=2,
                                         batch_samples=4, hidden_dims=(16,), embedding_dim=8,
                                         epochs=2, flip_augment=False),
        labels=hot(lists, 3).numpy())  # (N, C): as a list-file data set gives them
    assert setup.labels == LabelSet.from_lists(lists, 3) and not setup.labels.is_single
    assert setup.batch_labels(splits.train[:5]).shape == (5, 3)
    history = fit(setup, tmp_path / "run", saver(setup, config))
    assert all(0 < h.val_map <= 1 and math.isnan(h.val_knn) for h in history)
    assert all(h.empty_batches == 0 for h in history)
