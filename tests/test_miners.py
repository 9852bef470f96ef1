"""Every miner against a brute-force loop over all triplets; boundaries; degenerate batches."""

from __future__ import annotations

import itertools

import pytest
import torch
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from deephash.losses.distances import EuclideanDistance
from deephash.miners import BatchAllMiner, MiningBatch, create_miner, miner_names
from deephash.miners.pair_negative import PairNegativeMiner

MARGIN = 0.25


def batch(seed: int, p: int = 4, k: int = 3, dim: int = 5, normalize: bool = False) -> MiningBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p * k, dim, generator=g)
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1)
    labels = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=g)]
    return MiningBatch(EuclideanDistance().matrix(x), labels, x)


def valid_triplets(labels: torch.Tensor) -> list[tuple[int, int, int]]:
    n = len(labels)
    return [(a, p, q) for a, p, q in itertools.product(range(n), repeat=3)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]]


def as_list(triplets: tuple[torch.Tensor, ...]) -> list[tuple[int, int, int]]:
    return list(zip(*(t.tolist() for t in triplets), strict=True))


def one_dimensional(positions: list[float], labels: list[int]) -> MiningBatch:
    x = torch.tensor(positions)[:, None]
    return MiningBatch((x - x.T).abs(), torch.tensor(labels), x)


@pytest.mark.parametrize("seed", range(3))
def test_batch_all_is_every_valid_triplet_in_order(seed: int) -> None:
    b = batch(seed)
    mined = BatchAllMiner().mine(b)
    assert as_list(mined) == valid_triplets(b.labels)
    assert len(mined) == 4 * 3 * 2 * 3 * 3  # P*K*(K-1)*(P-1)*K
    assert as_list(mined) == as_list(lmu.get_all_triplets_indices(b.labels))


def test_batch_all_with_uneven_classes() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    b = MiningBatch(torch.zeros(7, 7), labels, torch.zeros(7, 2))
    assert as_list(BatchAllMiner().mine(b)) == valid_triplets(labels)


@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_against_brute_force_and_pml(seed: int) -> None:
    b = batch(seed)
    d, y = b.distances, b.labels
    expected = []
    for a in range(len(y)):
        pos = [p for p in range(len(y)) if p != a and y[p] == y[a]]
        neg = [n for n in range(len(y)) if y[n] != y[a]]
        expected.append((a, max(pos, key=lambda p: (d[a, p], -p)),
                         min(neg, key=lambda n: (d[a, n], n))))
    mined = create_miner("batch-hard", MARGIN).mine(b)
    assert as_list(mined) == expected
    pml = pml_miners.BatchHardMiner(distance=LpDistance(normalize_embeddings=False))(
        b.embeddings, y)
    assert sorted(as_list(pml)) == sorted(expected)


@pytest.mark.parametrize("seed", range(4))
def test_semi_hard_against_brute_force(seed: int) -> None:
    b = batch(seed, p=5, k=4)
    d, y = b.distances, b.labels
    expected = []
    for a, p in itertools.product(range(len(y)), repeat=2):
        if a == p or y[a] != y[p]:
            continue
        window = [n for n in range(len(y))
                  if y[n] != y[a] and d[a, p] < d[a, n] < d[a, p] + MARGIN]
        if window:
            expected.append((a, p, min(window, key=lambda n: (d[a, n], n))))
    assert as_list(create_miner("semi-hard", MARGIN).mine(b)) == expected


@pytest.mark.parametrize("seed", range(3))
def test_random_hard_picks_uniformly_among_violators(seed: int) -> None:
    b = batch(seed, p=3, k=3, dim=2)
    d, y = b.distances, b.labels
    violators = {}
    for a, p in itertools.product(range(len(y)), repeat=2):
        if a != p and y[a] == y[p]:
            window = [n for n in range(len(y)) if y[n] != y[a] and d[a, n] < d[a, p] + MARGIN]
            if window:
                violators[(a, p)] = window
    miner = create_miner("random-hard", MARGIN, seed=seed)
    counts: dict[tuple[int, int, int], int] = {}
    draws = 600
    for _ in range(draws):
        mined = as_list(miner.mine(b))
        assert [(a, p) for a, p, _ in mined] == sorted(violators)  # every pair, once
        for t in mined:
            counts[t] = counts.get(t, 0) + 1
    for (a, p), window in violators.items():
        for n in window:  # each candidate drawn about draws / len(window) times
            assert abs(counts.get((a, p, n), 0) / draws - 1 / len(window)) < 0.08
    assert all(n in violators[(a, p)] for a, p, n in counts)


def test_random_hard_is_reproducible_from_its_seed() -> None:
    b = batch(0, p=4, k=4)
    runs = [as_list(create_miner("random-hard", 1.0, seed=5).mine(b)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0] != as_list(create_miner("random-hard", 1.0, seed=6).mine(b))


def test_hard_semi_hard_easy_boundaries_in_one_dimension() -> None:
    # anchor 0.0 and positive 1.0 (d_ap = 1); negatives at distances 0.5 (hard),
    # 1.0 (tie with the positive: violating, not semi-hard), 1.125 (semi-hard),
    # 1.25 (exactly d_ap + margin: zero loss) and 1.5 (easy). All binary-exact.
    b = one_dimensional([0.0, 1.0, 0.5, 1.0, 1.125, 1.25, 1.5], [0, 0, 1, 2, 3, 4, 5])
    pair = [(a, p, n) for a, p, n in as_list(create_miner("semi-hard", MARGIN).mine(b)) if a == 0]
    assert pair == [(0, 1, 4)]
    random = PairNegativeMiner(MARGIN, "violating", "random")
    seen = {n for _ in range(200) for a, p, n in as_list(random.mine(b)) if a == 0}
    assert seen == {2, 3, 4}
    curriculum = create_miner("curriculum", MARGIN)
    picks = []
    for t in (0.0, 0.5, 1.0):
        curriculum.set_progress(t)
        picks.append([n for a, p, n in as_list(curriculum.mine(b)) if a == 0])
    assert picks == [[4], [3], [2]]  # easiest violator -> middle -> hardest


@pytest.mark.parametrize("seed", range(3))
def test_curriculum_end_points_against_brute_force(seed: int) -> None:
    b = batch(seed, p=4, k=4)
    d, y = b.distances, b.labels
    miner = create_miner("curriculum", MARGIN)
    for hardness, pick in ((1.0, min), (0.0, max)):
        expected = []
        for a, p in itertools.product(range(len(y)), repeat=2):
            if a != p and y[a] == y[p]:
                window = [n for n in range(len(y))
                          if y[n] != y[a] and d[a, n] < d[a, p] + MARGIN]
                if window:
                    keyed = [((d[a, n], n if pick is min else -n), n) for n in window]
                    expected.append((a, p, pick(keyed)[1]))
        miner.set_progress(hardness)
        got = as_list(miner.mine(b))
        assert [(a, p) for a, p, _ in got] == [(a, p) for a, p, _ in expected]
        assert [float(d[a, n]) for a, p, n in got] == [float(d[a, n]) for a, p, n in expected]


def test_distance_weighted_follows_the_inverse_sphere_density() -> None:
    # one anchor-positive pair, two negatives at distances 0.6 and 1.2 in n = 8 dimensions
    angles = {"a": 0.0, "p": 0.3, "n1": 2 * torch.asin(torch.tensor(0.3)).item(),
              "n2": 2 * torch.asin(torch.tensor(0.6)).item(), "far": torch.pi}
    copies = 200  # the positive repeated: anchor 0 draws one negative per copy per call
    rows = [angles["a"], *[angles["p"]] * copies, angles["n1"], angles["n2"], angles["far"]]
    x = torch.zeros(len(rows), 8)
    for row, angle in enumerate(rows):
        x[row, 0], x[row, 1] = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
    labels = torch.tensor([0] * (copies + 1) + [1, 2, 3])
    b = MiningBatch(EuclideanDistance().matrix(x), labels, x)
    miner = create_miner("distance-weighted", MARGIN, seed=0)
    picks = [n for _ in range(20) for a, p, n in as_list(miner.mine(b)) if a == 0]
    n1, n2 = copies + 1, copies + 2
    assert len(picks) == 20 * copies
    assert set(picks) == {n1, n2}  # the antipodal negative (d = 2 > 1.4) is never drawn

    def weight(d: float, n: int = 8) -> float:
        return d ** (2 - n) * (1 - d * d / 4) ** (-(n - 3) / 2)

    expected = weight(0.6) / (weight(0.6) + weight(1.2))
    assert abs(picks.count(n1) / len(picks) - expected) < 0.03


def test_distance_weighted_refuses_unnormalised_embeddings() -> None:
    from deephash.errors import ConfigError

    with pytest.raises(ConfigError, match="L2-normalised"):
        create_miner("distance-weighted", MARGIN).mine(batch(0))


@pytest.mark.parametrize("name", miner_names("triplets"))
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3], [5]], ids=["one-class",
                                                                           "all-distinct",
                                                                           "single"])
def test_degenerate_batches_give_no_triplets(name: str, labels: list[int]) -> None:
    x = torch.nn.functional.normalize(torch.randn(len(labels), 4), dim=1)
    b = MiningBatch(EuclideanDistance().matrix(x), torch.tensor(labels), x)
    assert len(create_miner(name, MARGIN).mine(b)) == 0


@pytest.mark.parametrize("name", miner_names("triplets"))
def test_every_miner_returns_valid_triplets(name: str) -> None:
    b = batch(1, p=6, k=4, normalize=True)
    mined = create_miner(name, 2.0).mine(b)
    assert len(mined) > 0
    y = b.labels
    assert bool((mined.anchor != mined.positive).all())
    assert bool((y[mined.anchor] == y[mined.positive]).all())
    assert bool((y[mined.anchor] != y[mined.negative]).all())
