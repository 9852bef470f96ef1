"""Pairs: online pair miners and offline pair views against brute-force loops; the
contrastive loss on pairs; the command line."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_frequencies, tiny_run_args

from deephash.cli import main
from deephash.data.tuples import draw_pairs, fixed_pairs
from deephash.errors import ConfigError
from deephash.losses import create_loss
from deephash.losses.distances import EuclideanDistance
from deephash.miners import MiningBatch, Pairs, create_miner, miner_names
from deephash.training.offline import OfflineSampler, OfflineTupleView
from deephash.training.trainer import batch_loss

LABELS = np.array([2, 0, 2, 1, 0, 2, 3, 0, 2])  # class 1 and 3 have one item each


def random_batch(seed: int, n: int = 14, classes: int = 4) -> MiningBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return MiningBatch(EuclideanDistance().matrix(x), labels, x)


def integer_batch(positions: list[int], labels: list[int]) -> MiningBatch:
    """Points on a line at integer positions: many exactly tied distances."""
    x = torch.tensor(positions, dtype=torch.float32)[:, None]
    return MiningBatch((x - x.T).abs(), torch.tensor(labels), x)


def as_set(pairs: Pairs) -> set[tuple[int, int, bool]]:
    got = list(zip(pairs.first.tolist(), pairs.second.tolist(), pairs.same.tolist(),
                   strict=True))
    assert len(got) == len(set(got)), "a pair was mined twice"
    return set(got)


def loop_pairs(labels: torch.Tensor) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Every unordered pair (i < j), split into positive and negative, in row-major order."""
    pairs = list(itertools.combinations(range(len(labels)), 2))
    return ([(i, j) for i, j in pairs if labels[i] == labels[j]],
            [(i, j) for i, j in pairs if labels[i] != labels[j]])


@pytest.mark.parametrize("seed", range(3))
def test_all_pairs_is_every_pair_once(seed: int) -> None:
    batch = random_batch(seed)
    positives, negatives = loop_pairs(batch.labels)
    got = as_set(create_miner("all-pairs", 0.0).mine(batch))
    assert got == {(i, j, True) for i, j in positives} | {(i, j, False) for i, j in negatives}
    assert len(got) == len(batch.labels) * (len(batch.labels) - 1) // 2


def test_all_pairs_match_pytorch_metric_learning() -> None:
    """PML's PairMarginMiner with no margin in the way returns every pair in both orders."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.miners import PairMarginMiner

    batch = random_batch(7, n=20)
    a1, p, a2, n = PairMarginMiner(pos_margin=-1.0, neg_margin=1e9, distance=LpDistance())(
        batch.embeddings, batch.labels)
    theirs = ({(min(i, j), max(i, j), True) for i, j in zip(a1.tolist(), p.tolist(), strict=True)}
              | {(min(i, j), max(i, j), False)
                 for i, j in zip(a2.tolist(), n.tolist(), strict=True)})
    ours = as_set(create_miner("all-pairs", 0.0).mine(batch))
    assert ours == theirs and 2 * len(ours) == len(a1) + len(a2)


@pytest.mark.parametrize("seed", range(3))
def test_hard_pairs_are_the_nearest_negatives_as_many_as_positives(seed: int) -> None:
    batch = random_batch(seed)
    positives, negatives = loop_pairs(batch.labels)
    d = batch.distances
    hardest = sorted(negatives, key=lambda ij: (float(d[ij]), ij))[: len(positives)]
    got = as_set(create_miner("hard-pairs", 0.0).mine(batch))
    assert got == {(i, j, True) for i, j in positives} | {(i, j, False) for i, j in hardest}


@pytest.mark.parametrize("seed", range(5))
def test_nearest_is_the_head_of_a_stable_sort(seed: int) -> None:
    from deephash.miners.pairs import nearest

    g = torch.Generator().manual_seed(seed)
    d = torch.randint(0, 6, (40,), generator=g).float()  # many ties
    for k in (0, 1, 7, 20, 39, 40, 55):
        expected = torch.sort(d, stable=True).indices[:k]
        assert nearest(d, k).tolist() == expected.tolist()  # same items, same order


def test_hard_pair_ties_go_to_the_first_pair_in_row_major_order() -> None:
    batch = integer_batch([0, 1, 2, 3, 4], [0, 0, 1, 2, 1])
    positives, negatives = loop_pairs(batch.labels)
    assert positives == [(0, 1), (2, 4)]
    at_one = [(i, j) for i, j in negatives if j - i == 1]
    assert at_one == [(1, 2), (2, 3), (3, 4)]  # three tied nearest negatives, two are taken
    got = as_set(create_miner("hard-pairs", 0.0).mine(batch))
    assert got == {(0, 1, True), (2, 4, True), (1, 2, False), (2, 3, False)}


@pytest.mark.parametrize(("labels", "expected"), [
    ([3, 3, 3, 3], {"all-pairs": (6, 0), "hard-pairs": (6, 0)}),
    ([0, 1, 2, 3], {"all-pairs": (0, 6), "hard-pairs": (0, 0)}),
    ([5], {"all-pairs": (0, 0), "hard-pairs": (0, 0)}),
    ([0, 0, 1, 2, 3, 4], {"all-pairs": (1, 14), "hard-pairs": (1, 1)}),
], ids=["one-class", "all-distinct", "single", "one-positive"])
def test_pair_counts_on_degenerate_batches(labels: list[int],
                                           expected: dict[str, tuple[int, int]]) -> None:
    x = torch.nn.functional.normalize(torch.randn(len(labels), 4), dim=1)
    batch = MiningBatch(EuclideanDistance().matrix(x), torch.tensor(labels), x)
    for name, (n_positive, n_negative) in expected.items():
        pairs = create_miner(name, 0.0).mine(batch)
        assert (int(pairs.same.sum()), int((~pairs.same).sum())) == (n_positive, n_negative)


def test_contrastive_loss_on_mined_pairs_against_a_loop() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(12) % 3
    loss = create_loss("contrastive", margin=2.0, reduction="mean")
    out = batch_loss(loss, create_miner("hard-pairs", 0.0), x, labels)
    positives, negatives = loop_pairs(labels)
    d = {ij: float((x[ij[0]] - x[ij[1]]).detach().norm()) for ij in positives + negatives}
    hardest = sorted(negatives, key=lambda ij: (d[ij], ij))[: len(positives)]
    values = [0.5 * d[ij] ** 2 for ij in positives]
    values += [0.5 * max(0.0, 2.0 - d[ij]) ** 2 for ij in hardest]
    assert out.n_items == len(values) == 2 * len(positives)
    assert out.loss.item() == pytest.approx(sum(values) / len(values), rel=1e-9)
    assert out.mean_positive_distance == pytest.approx(np.mean([d[ij] for ij in positives]))
    out.loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_contrastive_loss_on_only_positive_pairs_has_nan_negative_statistics() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    out = batch_loss(create_loss("contrastive", 1.0), create_miner("all-pairs", 0.0), x,
                     torch.zeros(4, dtype=torch.long))
    assert out.n_items == 6 and np.isnan(out.mean_negative_distance)
    assert out.loss.item() > 0


@pytest.mark.parametrize("loss", ["facenet", "hoffer", "dtsh"])
@pytest.mark.parametrize("miner", miner_names("pairs"))
def test_triplet_losses_refuse_pairs(loss: str, miner: str) -> None:
    x = torch.randn(6, 3)
    with pytest.raises(ConfigError, match="pairs"):
        batch_loss(create_loss(loss, 0.5), create_miner(miner, 0.5), x,
                   torch.tensor([0, 0, 1, 1, 2, 2]))


def test_every_drawn_pair_is_valid_and_never_pairs_an_item_with_itself() -> None:
    first, second, same = draw_pairs(LABELS, 5000, np.random.default_rng(0)).T
    assert (first != second).all()
    assert np.array_equal(same == 1, LABELS[first] == LABELS[second])
    assert abs(same.mean() - 0.5) < 0.03


def test_pair_draws_follow_the_documented_scheme() -> None:
    """Frequencies against a brute-force list of every possible (first, second, same) with
    its probability: a uniform eligible first item, a fair coin, then a uniform other
    member of its class or a uniform item of another class."""
    eligible = [i for i in range(len(LABELS)) if (LABELS[i] == LABELS).sum() >= 2]
    expected: dict[tuple[int, int, int], float] = {}
    for a in eligible:
        positives = [p for p in range(len(LABELS)) if LABELS[p] == LABELS[a] and p != a]
        negatives = [n for n in range(len(LABELS)) if LABELS[n] != LABELS[a]]
        for p in positives:
            expected[(a, p, 1)] = 0.5 / len(eligible) / len(positives)
        for n in negatives:
            expected[(a, n, 0)] = 0.5 / len(eligible) / len(negatives)
    draws = 200_000
    drawn = draw_pairs(LABELS, draws, np.random.default_rng(1)).tolist()
    assert_frequencies(Counter(map(tuple, drawn)), expected, draws)


def test_fixed_pairs_are_reproducible_from_the_seed() -> None:
    assert np.array_equal(fixed_pairs(LABELS, 50, 3), fixed_pairs(LABELS, 50, 3))
    assert not np.array_equal(fixed_pairs(LABELS, 50, 3), fixed_pairs(LABELS, 50, 4))


def test_pair_sampler_lays_out_two_blocks_and_replays_epochs() -> None:
    sampler = OfflineSampler(LABELS, tuples_per_batch=5, seed=2, batches_per_epoch=3,
                             tuple_size=2)
    batches = list(sampler.epoch(1))
    assert len(batches) == 3 and all(len(b) == 10 for b in batches)
    assert all(np.array_equal(a, b) for a, b in zip(batches, sampler.epoch(1), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, sampler.epoch(2), strict=True))
    for batch in batches:
        first, second = batch.reshape(2, 5)
        assert (first != second).all()


def test_offline_pair_miner_reads_the_layout() -> None:
    labels = torch.tensor([0, 1, 2, 0, 2, 1])  # pairs (0, 3) same, (1, 4), (2, 5) different
    pairs = create_miner("offline-pairs", 0.0).mine(
        MiningBatch(torch.zeros(6, 6), labels, torch.zeros(6, 2)))
    assert pairs.first.tolist() == [0, 1, 2] and pairs.second.tolist() == [3, 4, 5]
    assert pairs.same.tolist() == [True, False, False]


def test_tuple_view_gives_training_and_fixed_evaluation_pairs() -> None:
    items = [f"image-{i}" for i in range(len(LABELS))]
    train = OfflineTupleView(items, LABELS, size=40, seed=3)
    epoch0 = [train[i] for i in range(len(train))]
    assert all(a != b and (LABELS[items.index(a)] == LABELS[items.index(b)]) == same
               for a, b, same in epoch0)
    train.set_epoch(1)
    assert [train[i] for i in range(40)] != epoch0
    train.set_epoch(0)
    assert [train[i] for i in range(40)] == epoch0
    evaluation = OfflineTupleView(items, LABELS, size=40, seed=3, fixed=True)
    before = [evaluation[i] for i in range(40)]
    evaluation.set_epoch(5)
    assert [evaluation[i] for i in range(40)] == before
    rows = fixed_pairs(LABELS, 40, 3)
    assert before[0] == (items[rows[0, 0]], items[rows[0, 1]], bool(rows[0, 2]))
    triplets = OfflineTupleView(items, LABELS, size=10, seed=0, tuple_size=3)
    a, p, n = triplets[0]
    assert a != p and LABELS[items.index(a)] == LABELS[items.index(p)] != LABELS[items.index(n)]


@pytest.mark.parametrize("miner", ["hard-pairs", "all-pairs", "offline-pairs"])
def test_training_with_pairs_end_to_end(folder: Path, tmp_path: Path, miner: str) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--loss", "contrastive", "--miner", miner,
                 "--margin", "1.0", "--embedding-dim", "8",
                 *tiny_run_args(folder, tmp_path / "c", epochs=2)]) == 0
    history = json.loads((run / "history.json").read_text())
    per_batch = [h["triplets_per_batch"] for h in history]  # pairs per batch here
    expected = {"all-pairs": 66.0, "offline-pairs": 6.0}  # 12 images: C(12, 2); 12 / 2
    if miner in expected:
        assert per_batch == [expected[miner]] * 2
    else:  # 3 classes x 4 images: 18 positive pairs, as many hard negatives
        assert per_batch == [36.0, 36.0]
    assert json.loads((run / "metrics.json").read_text())["map@all"] > 0


def test_a_triplet_loss_with_a_pair_miner_is_refused(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--loss", "facenet", "--miner",
                 "hard-pairs", *tiny_run_args(folder, tmp_path / "c")]) == 2
    assert "miner 'hard-pairs' yields pairs; the facenet loss trains on triplets" in \
        capsys.readouterr().err
