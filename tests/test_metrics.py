"""Metrics against scikit-learn, SciPy and brute-force loops over whole rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier

from deephash.errors import DataError
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.metrics.distances import get_distance
from deephash.metrics.knn import knn_predict
from deephash.metrics.ranking import rank_query, ranking_order

SPEC = EvaluationSpec(knn_k=(1, 3, 4), map_cutoffs=(5, 20), precision_k=(1, 7, 50))


def brute_force(dist: np.ndarray, yq: np.ndarray, yd: np.ndarray, spec: EvaluationSpec,
                self_cols: list[int] | None = None) -> dict[str, float]:
    """The documented definitions, one query and one item at a time."""
    totals: dict[str, list[float]] = {}
    for q in range(len(yq)):
        items = [j for j in range(len(yd)) if self_cols is None or j != self_cols[q]]
        ranking = sorted(items, key=lambda j: (np.float32(dist[q, j]), j))
        rel = [bool(yd[j] == yq[q]) for j in ranking]
        precisions, found = [], 0
        for position, is_rel in enumerate(rel, start=1):
            if is_rel:
                found += 1
                precisions.append(found / position)
        totals.setdefault("map@all", []).append(np.mean(precisions) if precisions else 0.0)
        for k in spec.map_cutoffs:
            positions = np.flatnonzero(rel) + 1
            within = [p for p, pos in zip(precisions, positions, strict=True) if pos <= k]
            totals.setdefault(f"map@{k}", []).append(np.mean(within) if within else 0.0)
        for k in spec.precision_k:
            totals.setdefault(f"p@{k}", []).append(sum(rel[:k]) / min(k, len(ranking)))
        for k in spec.knn_k:
            votes: dict[int, int] = {}
            first: dict[int, int] = {}
            for position, j in enumerate(ranking[:k]):
                votes[yd[j]] = votes.get(yd[j], 0) + 1
                first.setdefault(yd[j], position)
            winner = max(votes, key=lambda c: (votes[c], -first[c]))
            totals.setdefault(f"knn_acc@{k}", []).append(float(winner == yq[q]))
    return {name: float(np.mean(values)) for name, values in totals.items()}


def random_case(seed: int, n_q: int = 12, n_d: int = 60, dim: int = 4, ties: bool = False,
                classes: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    if ties:  # small integer coordinates: many exactly equal distances
        q = rng.integers(-2, 3, (n_q, dim)).astype(np.float32)
        d = rng.integers(-2, 3, (n_d, dim)).astype(np.float32)
    else:
        q = rng.normal(size=(n_q, dim)).astype(np.float32)
        d = rng.normal(size=(n_d, dim)).astype(np.float32)
    return q, d, rng.integers(0, classes, n_q), rng.integers(0, classes, n_d)


def distance_matrix(q: np.ndarray, d: np.ndarray, name: str) -> np.ndarray:
    metric = get_distance(name)
    return metric.matrix(metric.prepare(torch.from_numpy(q)),
                         metric.prepare(torch.from_numpy(d))).numpy()


@pytest.mark.parametrize("name", ["euclidean", "sqeuclidean", "cosine"])
def test_distances_match_scipy(name: str) -> None:
    q, d, _, _ = random_case(0)
    np.testing.assert_allclose(distance_matrix(q, d, name), cdist(q, d, name), atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn(seed: int) -> None:
    q, d, yq, yd = random_case(seed)
    report = evaluate_retrieval(q, d, yq, yd, "euclidean", SPEC)
    dist = cdist(q, d)
    expected = [average_precision_score(yd == yq[i], -dist[i]) if (yd == yq[i]).any() else 0.0
                for i in range(len(yq))]
    np.testing.assert_allclose(report.per_query_ap, expected, atol=1e-9)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", ["euclidean", "cosine"])
def test_all_metrics_match_brute_force(seed: int, ties: bool, name: str) -> None:
    q, d, yq, yd = random_case(seed, ties=ties)
    q[0] = 0.0 if name == "euclidean" else q[0]  # a query at the origin
    report = evaluate_retrieval(q, d, yq, yd, name, SPEC, chunk_size=5)
    expected = brute_force(distance_matrix(q, d, name), yq, yd, SPEC)
    assert report.metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert report.metrics[key] == pytest.approx(value, abs=1e-9), key


def test_a_query_never_matches_itself() -> None:
    q, d, yq, yd = random_case(3, ties=True)
    pool = np.concatenate([q, d])
    labels = np.concatenate([yq, yd])
    query_ids = np.arange(len(q))
    database_ids = np.arange(len(pool))[::-1].copy()  # any order of identities
    report = evaluate_retrieval(q, pool[database_ids], yq, labels[database_ids], "euclidean",
                                SPEC, query_ids=query_ids, database_ids=database_ids)
    self_cols = [int(np.flatnonzero(database_ids == i)[0]) for i in query_ids]
    expected = brute_force(distance_matrix(q, pool[database_ids], "euclidean"), yq,
                           labels[database_ids], SPEC, self_cols)
    for key, value in expected.items():
        assert report.metrics[key] == pytest.approx(value, abs=1e-9), key
    naive = evaluate_retrieval(q, pool[database_ids], yq, labels[database_ids], "euclidean", SPEC)
    assert naive.metrics["knn_acc@1"] == 1.0  # without identities, each finds itself
    assert report.metrics["knn_acc@1"] < 1.0


def test_hand_computed_case_with_a_tie() -> None:
    # 1-D: query 0 (label 0); database x = 1, 2, 2, 3 with labels 0, 1, 0, 1.
    # Ranking by (distance, index): idx0 (rel), idx1 (tie at 2, irrelevant), idx2 (rel), idx3.
    # AP = (1/1 + 2/3) / 2;  the other tie order would give 1.0.
    spec = EvaluationSpec(knn_k=(1, 2, 3), map_cutoffs=(2,), precision_k=(2, 4))
    report = evaluate_retrieval(np.array([[0.0]]), np.array([[1.0], [2.0], [2.0], [3.0]]),
                                np.array([0]), np.array([0, 1, 0, 1]), "euclidean", spec)
    m = report.metrics
    assert m["map@all"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["map@2"] == pytest.approx(1.0)  # one relevant in the top 2, precision 1
    assert m["p@2"] == 0.5 and m["p@4"] == 0.5
    assert m["knn_acc@1"] == 1.0
    assert m["knn_acc@2"] == 1.0  # 1-1 vote: the nearest member's class wins
    assert m["knn_acc@3"] == 1.0  # 2 votes for label 0
    np.testing.assert_allclose(report.curve_recall[-1], 1.0)
    np.testing.assert_allclose(report.curve_precision[-1], 0.5)


def test_knn_matches_sklearn_without_vote_ties() -> None:
    q, d, yq, yd = random_case(11, n_q=40, n_d=80, classes=2)
    for k in (1, 3, 5):  # two classes and odd k: no vote ties
        spec = EvaluationSpec(knn_k=(k,), map_cutoffs=(), precision_k=())
        report = evaluate_retrieval(q, d, yq, yd, "euclidean", spec)
        sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(d, yd)
        assert report.metrics[f"knn_acc@{k}"] == pytest.approx(sk.score(q, yq))


def test_knn_vote_rule() -> None:
    neighbors = np.array([[2, 1, 1, 2], [0, 1, 2, 3], [3, 3, 0, 0]])
    assert knn_predict(neighbors, 4, 4).tolist() == [2, 0, 3]
    assert knn_predict(neighbors, 3, 4).tolist() == [1, 0, 3]
    assert knn_predict(neighbors, 1, 4).tolist() == [2, 0, 3]


def test_equal_distances_are_exact_ties_in_any_chunking() -> None:
    rng = np.random.default_rng(0)
    d = rng.integers(-2, 3, (200, 16)).astype(np.float32)
    d[100:] = d[:100]  # every item twice
    q = rng.integers(-2, 3, (33, 16)).astype(np.float32)
    metric = get_distance("cosine")
    dq, dd = metric.prepare(torch.from_numpy(q)), metric.prepare(torch.from_numpy(d))
    whole = metric.matrix(dq, dd).numpy()
    assert np.array_equal(whole[:, :100], whole[:, 100:])
    for size in (1, 7):
        parts = [metric.matrix(dq[i:i + size], dd).numpy() for i in range(0, len(q), size)]
        assert np.array_equal(np.concatenate(parts), whole)


def test_chunking_and_threads_do_not_change_results() -> None:
    q, d, yq, yd = random_case(5, n_q=30, ties=True)
    a = evaluate_retrieval(q, d, yq, yd, "cosine", SPEC, chunk_size=1, workers=1)
    b = evaluate_retrieval(q, d, yq, yd, "cosine", SPEC, chunk_size=64, workers=3)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.curve_precision, b.curve_precision)


def test_queries_without_relevant_items_score_zero() -> None:
    q, d, _, yd = random_case(2)
    report = evaluate_retrieval(q, d, np.full(len(q), 7), yd, "euclidean", SPEC)
    assert report.metrics["map@all"] == 0.0 and report.metrics["p@7"] == 0.0
    assert np.all(report.curve_recall == 0.0)


def test_bad_inputs_are_refused() -> None:
    q, d, yq, yd = random_case(0)
    with pytest.raises(DataError, match="k=4 needs more"):
        evaluate_retrieval(q[:2], d[:3], yq[:2], yd[:3], "euclidean", SPEC)
    q[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_retrieval(q, d, yq, yd, "euclidean", SPEC)


def test_ranking_order_is_a_stable_argsort() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-3, 4, 500).astype(np.float32) * np.float32(0.25)
    values[[3, 9]] = [np.float32(-0.0), np.float32(0.0)]
    values[[5, 6]] = [np.inf, np.float32(-1e30)]
    expected = np.argsort(values.astype(np.float64) + 0.0, kind="stable")
    np.testing.assert_array_equal(ranking_order(values), expected)
    random_values = rng.normal(size=1000).astype(np.float32)
    np.testing.assert_array_equal(ranking_order(random_values),
                                  np.argsort(random_values, kind="stable"))


def test_rank_query_returns_relevant_positions_and_the_top() -> None:
    distances = np.array([0.5, 0.1, 0.5, 0.3, 0.1], dtype=np.float32)
    relevant = np.array([True, False, False, True, True])
    ranked = rank_query(distances, relevant, k_top=3)
    # order: idx1 (0.1), idx4 (0.1), idx3 (0.3), idx0 (0.5), idx2 (0.5)
    assert ranked.ranks.tolist() == [2, 3, 4]
    assert ranked.top.tolist() == [1, 4, 3]
