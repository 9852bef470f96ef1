"""Packed codes, Hamming distances and tie-aware metrics against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from deephash.hashing.codes import binarize, hamming_matrix, pack_codes, unpack_codes
from deephash.metrics.hamming import (
    distance_histograms,
    precision_recall_by_radius,
    tie_aware_average_precision,
    tie_aware_precision_at,
)


@pytest.mark.parametrize("bits", [1, 7, 8, 12, 16, 24, 32, 48, 64, 65])
def test_pack_round_trip_and_popcount_distance(bits: int) -> None:
    rng = np.random.default_rng(bits)
    u = rng.normal(size=(9, bits))
    u[0, 0] = 0.0  # sign(0) = +1
    codes = binarize(u)
    assert codes[0, 0] == 1 and set(np.unique(codes)) <= {-1, 1}
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (9, -(-bits // 8))
    assert np.array_equal(packed, np.packbits(u >= 0, axis=1))
    assert np.array_equal(unpack_codes(packed, bits), codes)
    distances = hamming_matrix(packed[:4], packed)
    loop = [[sum(codes[i, k] != codes[j, k] for k in range(bits)) for j in range(9)]
            for i in range(4)]
    assert distances.tolist() == loop
    inner = codes[:4].astype(np.int64) @ codes.T.astype(np.int64)
    assert np.array_equal(distances, (bits - inner) // 2)


def test_binarize_accepts_tensors() -> None:
    assert binarize(torch.tensor([[0.0, -0.5, 2.0]])).tolist() == [[1, -1, 1]]


def enumerate_orderings(distances: list[int], relevant: list[bool], k: int) -> dict[str, float]:
    """Average over every ordering of each tied group: AP, sum of precisions in the top k,
    relevant items in the top k."""
    groups = [[i for i in range(len(distances)) if distances[i] == d]
              for d in sorted(set(distances))]
    totals = {"ap": 0.0, "num_k": 0.0, "hits_k": 0.0}
    count = 0
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [i for group in perms for i in group]
        found, precisions = 0, []
        for position, item in enumerate(order, start=1):
            if relevant[item]:
                found += 1
                precisions.append((found / position, position))
        total = sum(relevant)
        totals["ap"] += sum(p for p, _ in precisions) / total if total else 0.0
        totals["num_k"] += sum(p for p, pos in precisions if pos <= k)
        totals["hits_k"] += sum(1 for _, pos in precisions if pos <= k)
        count += 1
    return {key: value / count for key, value in totals.items()}


@pytest.mark.parametrize("seed", range(12))
def test_tie_aware_metrics_equal_the_average_over_all_orderings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, bits, k = 7, 3, int(rng.integers(1, 8))
    distances = rng.integers(0, bits + 1, n)
    relevant = rng.random(n) < 0.5
    counts, hits = distance_histograms(distances[None, :], relevant[None, :], bits)
    expected = enumerate_orderings(distances.tolist(), relevant.tolist(), k)
    assert tie_aware_average_precision(counts, hits)[0] == pytest.approx(expected["ap"])
    ratio = expected["num_k"] / expected["hits_k"] if expected["hits_k"] else 0.0
    assert tie_aware_average_precision(counts, hits, cutoff=k)[0] == pytest.approx(ratio)
    assert tie_aware_precision_at(counts, hits, k)[0] == pytest.approx(expected["hits_k"] / k)


def test_without_ties_it_is_ordinary_average_precision() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        distances = rng.permutation(40)  # all distinct: no ties
        relevant = rng.random(40) < 0.3
        relevant[0] = True
        counts, hits = distance_histograms(distances[None, :], relevant[None, :], 39)
        expected = average_precision_score(relevant, -distances)
        assert tie_aware_average_precision(counts, hits)[0] == pytest.approx(expected)


def test_histograms_and_radius_curves() -> None:
    distances = np.array([[0, 2, 2, 3, 1], [4, 4, 4, 4, 4]])
    relevant = np.array([[True, False, True, False, False], [False] * 5])
    counts, hits = distance_histograms(distances, relevant, 4)
    assert counts.tolist() == [[1, 1, 2, 1, 0], [0, 0, 0, 0, 5]]
    assert hits.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    precision, recall = precision_recall_by_radius(counts, hits)
    assert precision[0].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.4, 0.4])
    assert recall[0].tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0, 1.0])
    assert precision[1, :4].tolist() == [0.0] * 4  # nothing within radius 0..3
    assert tie_aware_average_precision(counts, hits)[1] == 0.0


def test_evaluate_codes_against_brute_force() -> None:
    from deephash.metrics import EvaluationSpec, evaluate_retrieval
    from deephash.metrics.evaluate_codes import evaluate_codes

    rng = np.random.default_rng(3)
    bits = 6
    q_codes = binarize(rng.normal(size=(10, bits)))
    d_codes = binarize(rng.normal(size=(50, bits)))
    yq, yd = rng.integers(0, 3, 10), rng.integers(0, 3, 50)
    spec = EvaluationSpec(knn_k=(1, 5), map_cutoffs=(7,), precision_k=(4,))
    report = evaluate_codes(pack_codes(q_codes), pack_codes(d_codes), yq, yd, bits, spec,
                            index_order=True, chunk_size=3)
    distances = hamming_matrix(pack_codes(q_codes), pack_codes(d_codes))
    counts, hits = distance_histograms(distances, yq[:, None] == yd[None, :], bits)
    assert report.metrics["map@all"] == pytest.approx(
        tie_aware_average_precision(counts, hits).mean())
    within = distances <= 2
    same = yq[:, None] == yd[None, :]
    expected_r2 = np.mean([(same[i] & within[i]).sum() / within[i].sum() if within[i].any()
                           else 0.0 for i in range(10)])
    assert report.metrics["prec@r2"] == pytest.approx(expected_r2)
    # index order = the float evaluator on the same integer distances (Hamming = (K - b.b')/2)
    as_float = evaluate_retrieval(q_codes.astype(np.float32), d_codes.astype(np.float32), yq, yd,
                                  "sqeuclidean", spec)  # = 4 x Hamming: same order and ties
    for key in ("map@all", "map@7", "p@4", "knn_acc@1", "knn_acc@5"):
        assert report.metrics[f"{key}_index_order"] == pytest.approx(as_float.metrics[key])
    from deephash.metrics.hamming import class_histograms, tie_aware_knn

    classes = class_histograms(distances, yd, bits, 3)
    for k in (1, 5):
        expected_knn = np.mean(tie_aware_knn(classes, k) == yq)
        assert report.metrics[f"knn_acc@{k}"] == pytest.approx(expected_knn)
    assert report.radius_recall[-1] == pytest.approx(1.0)


def test_evaluate_codes_excludes_self_matches() -> None:
    from deephash.metrics import EvaluationSpec
    from deephash.metrics.evaluate_codes import evaluate_codes

    codes = pack_codes(binarize(np.random.default_rng(0).normal(size=(20, 8))))
    labels = np.arange(20) % 4
    ids = np.arange(20)
    spec = EvaluationSpec(knn_k=(1,), map_cutoffs=(), precision_k=())
    with_ids = evaluate_codes(codes, codes, labels, labels, 8, spec, query_ids=ids,
                              database_ids=ids)
    without = evaluate_codes(codes, codes, labels, labels, 8, spec)
    assert without.metrics["knn_acc@1"] == 1.0 and without.metrics["prec@r2"] > 0
    assert with_ids.metrics["knn_acc@1"] < 1.0
    assert with_ids.metrics["map@all"] < without.metrics["map@all"]


def test_tie_aware_knn_shares_the_boundary_group() -> None:
    from deephash.metrics.hamming import class_histograms, tie_aware_knn

    labels = np.array([0, 1, 1, 2, 2, 2, 0])
    # distances: item 0 at 0; items 1-6 tie at 3 (classes 1, 1, 2, 2, 2, 0)
    distances = np.array([[0, 3, 3, 3, 3, 3, 3], [1, 0, 2, 2, 2, 2, 2]])
    counts = class_histograms(distances, labels, 3, 3)
    assert counts[0, 3].tolist() == [1, 2, 3]
    # k = 1: item 0 alone -> class 0. k = 3: class 0 has 1 + 2/6, class 1 2 * 2/6,
    # class 2 3 * 2/6 = 1 -> class 0 (1.33). k = 7: votes 2, 2, 3 -> class 2
    assert [tie_aware_knn(counts, k)[0] for k in (1, 3, 7)] == [0, 0, 2]
    # row 1: item 1 (class 1) at 0, item 0 (class 0) at 1, then five tied at 2 with
    # classes 1, 2, 2, 2, 0. k = 2: 1-1 vote -> label 0. k = 3: 1.2, 1.2, 0.6 -> label 0.
    # k = 7: 2, 2, 3 -> label 2
    assert [tie_aware_knn(counts, k)[1] for k in (1, 2, 3, 7)] == [1, 0, 0, 2]


def test_tie_aware_knn_without_ties_is_the_majority_vote() -> None:
    from deephash.metrics.hamming import class_histograms, tie_aware_knn

    rng = np.random.default_rng(0)
    for _ in range(20):
        distances = rng.permutation(9)[None, :]  # distinct distances 0..8
        labels = rng.integers(0, 3, 9)
        order = np.argsort(distances[0])
        for k in (1, 3, 5):
            votes = np.bincount(labels[order[:k]], minlength=3)
            expected = int(np.argmax(votes))  # smallest label on a vote tie
            assert tie_aware_knn(class_histograms(distances, labels, 8, 3), k)[0] == expected
