"""Triplet accuracy and pair AUC on fixed tuples: loops, scikit-learn, ties, distances."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deephash.data.tuples import fixed_pairs, fixed_triplets
from deephash.errors import ConfigError
from deephash.metrics.verification import (
    VERIFICATION_DISTANCES,
    pair_auc,
    rowwise_distances,
    triplet_accuracy,
    verification_metrics,
)


def data(seed: int, n: int = 60, dim: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    return rng.normal(size=(n, dim)) + labels[:, None] * 0.7, labels


@pytest.mark.parametrize("distance", VERIFICATION_DISTANCES)
def test_rowwise_distances_against_a_loop(distance: str) -> None:
    x, _ = data(0)
    a, b = x[:20], x[20:40]
    expected = []
    for u, v in zip(a, b, strict=True):
        expected.append({"euclidean": np.sqrt(((u - v) ** 2).sum()),
                         "sqeuclidean": ((u - v) ** 2).sum(),
                         "cosine": 1 - u @ v / np.linalg.norm(u) / np.linalg.norm(v),
                         "hamming": sum(np.sign(s) != np.sign(t) for s, t in zip(u, v,
                                                                                strict=True))
                         }[distance])
    np.testing.assert_allclose(rowwise_distances(a, b, distance), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_pair_auc_matches_scikit_learn(seed: int) -> None:
    x, labels = data(seed)
    pairs = fixed_pairs(labels, 500, seed)
    d = rowwise_distances(x[pairs[:, 0]], x[pairs[:, 1]], "euclidean")
    assert pair_auc(x, pairs, "euclidean") == pytest.approx(roc_auc_score(pairs[:, 2], -d),
                                                            abs=1e-12)


def test_pair_auc_halves_ties_like_scikit_learn() -> None:
    x = np.array([[0.0], [1.0], [1.0], [2.0], [0.0], [3.0]])
    pairs = np.array([[0, 1, 1], [0, 2, 0], [0, 3, 1], [4, 1, 0], [0, 5, 0], [1, 2, 1]])
    # distances 1, 1, 2, 1, 3, 0: positives {1, 2, 0}, negatives {1, 1, 3}
    # by hand: positive 1 vs negatives (tie, tie, win) = 2; 2 vs (loss, loss, win) = 1;
    # 0 vs (win, win, win) = 3 -> 6 / 9
    assert pair_auc(x, pairs, "euclidean") == pytest.approx(6 / 9)
    assert roc_auc_score(pairs[:, 2], -np.array([1, 1, 2, 1, 3, 0])) == pytest.approx(6 / 9)
    with pytest.raises(ConfigError, match="positive and negative"):
        pair_auc(x, pairs[pairs[:, 2] == 1], "euclidean")


def test_triplet_accuracy_against_a_loop_with_ties() -> None:
    x, labels = data(4)
    x = np.round(x)  # many exactly equal distances
    triplets = fixed_triplets(labels, 400, 0)
    score = 0.0
    for a, p, n in triplets:
        d_ap, d_an = np.sqrt(((x[a] - x[p]) ** 2).sum()), np.sqrt(((x[a] - x[n]) ** 2).sum())
        score += 1.0 if d_ap < d_an else 0.5 if d_ap == d_an else 0.0
    assert triplet_accuracy(x, triplets, "euclidean") == pytest.approx(score / len(triplets))
    ties = sum(np.isclose(((x[a] - x[p]) ** 2).sum(), ((x[a] - x[n]) ** 2).sum())
               for a, p, n in triplets)
    assert ties > 0  # the case the half point is for actually occurs


def test_verification_metrics_are_seeded_and_skip_impossible_labels() -> None:
    x, labels = data(5)
    first = verification_metrics(x, labels, "cosine", seed=0, n=300)
    assert set(first) == {"triplet_acc", "pair_auc"}
    assert first == verification_metrics(x, labels, "cosine", seed=0, n=300)
    assert first != verification_metrics(x, labels, "cosine", seed=1, n=300)
    assert 0.5 < first["triplet_acc"] <= 1 and 0.5 < first["pair_auc"] <= 1  # separated data
    assert verification_metrics(x[:3], np.array([0, 1, 2]), "cosine", 0) == {}
