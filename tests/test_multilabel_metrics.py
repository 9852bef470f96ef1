"""Metrics on label sets: multi-label figures against brute-force loops over rankings and
tie orderings; single-label figures bit for bit those of the class-id code they replace."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import assert_frequencies
from test_hamming import enumerate_orderings
from test_labels import random_lists
from test_metrics import distance_matrix, random_case

import deephash.metrics.evaluate as evaluate_module
import deephash.metrics.evaluate_codes as codes_module
from deephash.data.tuples import _draw_by_relevance, draw_pairs, draw_triplets, fixed_triplets
from deephash.errors import ConfigError
from deephash.hashing.codes import binarize, hamming_matrix, pack_codes
from deephash.labels import LabelSet
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.metrics.knn import KnnVotes
from deephash.metrics.verification import verification_metrics

SPEC = EvaluationSpec(knn_k=(1, 3), map_cutoffs=(5, 20), precision_k=(1, 7, 50),
                      curve_points=20)


def shares(a: list[int], b: list[int]) -> bool:
    return bool(set(a) & set(b))


def ranked_brute_force(dist: np.ndarray, q_lists: list[list[int]], d_lists: list[list[int]],
                       spec: EvaluationSpec, cutoffs: np.ndarray,
                       self_cols: list[int] | None = None) -> dict[str, Any]:
    """The documented rank metrics, one query and one item at a time: ranking by (float32
    distance, database index), relevance = a shared label."""
    totals: dict[str, list[Any]] = {}
    for q in range(len(q_lists)):
        items = [j for j in range(len(d_lists)) if self_cols is None or j != self_cols[q]]
        ranking = sorted(items, key=lambda j: (np.float32(dist[q, j]), j))
        rel = [shares(q_lists[q], d_lists[j]) for j in ranking]
        positions = [p for p, r in enumerate(rel, start=1) if r]
        precisions = [(i + 1) / p for i, p in enumerate(positions)]
        totals.setdefault("map@all", []).append(np.mean(precisions) if precisions else 0.0)
        for k in spec.map_cutoffs:
            within = [x for x, p in zip(precisions, positions, strict=True) if p <= k]
            totals.setdefault(f"map@{k}", []).append(np.mean(within) if within else 0.0)
        for k in spec.precision_k:
            totals.setdefault(f"p@{k}", []).append(sum(rel[:k]) / min(k, len(ranking)))
        totals.setdefault("precision", []).append(
            [sum(rel[:c]) / min(c, len(ranking)) for c in cutoffs])
        totals.setdefault("recall", []).append(
            [sum(rel[:c]) / sum(rel) if sum(rel) else 0.0 for c in cutoffs])
    return {name: np.mean(np.array(values, dtype=float), axis=0)
            for name, values in totals.items()}


def multi_case(seed: int, ties: bool = False, n_q: int = 12,
               n_d: int = 60) -> tuple[np.ndarray, np.ndarray, list[list[int]], list[list[int]]]:
    q, d, _, _ = random_case(seed, n_q=n_q, n_d=n_d, ties=ties)
    return q, d, random_lists(seed, n_q, 5), random_lists(seed + 1, n_d, 5)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", ["euclidean", "cosine"])
def test_float_metrics_on_multi_label_sets_match_brute_force(seed: int, ties: bool,
                                                             name: str) -> None:
    q, d, q_lists, d_lists = multi_case(seed, ties)
    report = evaluate_retrieval(q, d, LabelSet.from_lists(q_lists),
                                LabelSet.from_lists(d_lists, 5), name, SPEC, chunk_size=5)
    expected = ranked_brute_force(distance_matrix(q, d, name), q_lists, d_lists, SPEC,
                                  report.curve_cutoffs)
    assert not any(key.startswith("knn") for key in report.metrics)  # no kNN on multi-label
    assert report.metrics.keys() == expected.keys() - {"precision", "recall"}
    for key in report.metrics:
        assert report.metrics[key] == pytest.approx(expected[key], abs=1e-9), key
    np.testing.assert_allclose(report.curve_precision, expected["precision"], atol=1e-9)
    np.testing.assert_allclose(report.curve_recall, expected["recall"], atol=1e-9)


def test_a_multi_label_query_never_matches_itself() -> None:
    q, d, q_lists, d_lists = multi_case(7, ties=True)
    pool, pool_lists = np.concatenate([q, d]), q_lists + d_lists
    database_ids = np.arange(len(pool))[::-1].copy()
    shuffled = [pool_lists[i] for i in database_ids]
    multi_hot = LabelSet.from_lists(shuffled, 5).multi_hot  # a plain (N, C) matrix works too
    report = evaluate_retrieval(q, pool[database_ids], LabelSet.from_lists(q_lists),
                                multi_hot, "euclidean", SPEC, query_ids=np.arange(len(q)),
                                database_ids=database_ids)
    self_cols = [int(np.flatnonzero(database_ids == i)[0]) for i in range(len(q))]
    expected = ranked_brute_force(distance_matrix(q, pool[database_ids], "euclidean"),
                                  q_lists, shuffled, SPEC, report.curve_cutoffs, self_cols)
    for key in report.metrics:
        assert report.metrics[key] == pytest.approx(expected[key], abs=1e-9), key


def calc_top_map(hamming: np.ndarray, q_hot: np.ndarray, d_hot: np.ndarray, topk: int) -> float:
    """DeepHash-pytorch's ``CalcTopMap`` (utils/tools.py), with its ``np.argsort`` made
    stable: ties in Hamming distance ranked by database index."""
    total = 0.0
    for i in range(len(q_hot)):
        gnd = (q_hot[i] @ d_hot.T > 0).astype(np.float32)
        tgnd = gnd[np.argsort(hamming[i], kind="stable")][:topk]
        tsum = int(tgnd.sum())
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        total += float(np.mean(count / tindex))
    return total / len(q_hot)


@pytest.mark.parametrize("seed", range(8))
def test_code_metrics_on_multi_label_sets_match_all_tie_orderings(seed: int) -> None:
    """Tiny cases (7 items, 3 bits): tie-aware figures = the mean over every ordering of
    each tied group; index-order figures = CalcTopMap; radius figures by counting."""
    rng = np.random.default_rng(seed)
    bits, k = 3, int(rng.integers(1, 8))
    q_codes, d_codes = binarize(rng.normal(size=(4, bits))), binarize(rng.normal(size=(7, bits)))
    q_lists, d_lists = random_lists(seed, 4, 3, most=2), random_lists(seed + 50, 7, 3, most=2)
    q_set, d_set = LabelSet.from_lists(q_lists, 3), LabelSet.from_lists(d_lists, 3)
    spec = EvaluationSpec(knn_k=(1,), map_cutoffs=(k,), precision_k=(k,))
    report = evaluate_codes(pack_codes(q_codes), pack_codes(d_codes), q_set, d_set, bits, spec,
                            index_order=True, chunk_size=3)
    dist = hamming_matrix(pack_codes(q_codes), pack_codes(d_codes))
    rel = np.array([[shares(a, b) for b in d_lists] for a in q_lists])
    tie_aware = [enumerate_orderings(dist[i].tolist(), rel[i].tolist(), k) for i in range(4)]
    expected = {
        "map@all": np.mean([e["ap"] for e in tie_aware]),
        f"map@{k}": np.mean([e["num_k"] / e["hits_k"] if e["hits_k"] else 0.0
                             for e in tie_aware]),
        f"p@{k}": np.mean([e["hits_k"] / min(k, 7) for e in tie_aware]),
        "prec@r2": np.mean([(rel[i] & (dist[i] <= 2)).sum() / (dist[i] <= 2).sum()
                            if (dist[i] <= 2).any() else 0.0 for i in range(4)]),
        "map@all_index_order": calc_top_map(dist, q_set.multi_hot, d_set.multi_hot, 7),
        f"map@{k}_index_order": calc_top_map(dist, q_set.multi_hot, d_set.multi_hot, k),
    }
    single = q_set.is_single and d_set.is_single
    assert ("knn_acc@1" in report.metrics) == single
    for key, value in expected.items():
        assert report.metrics[key] == pytest.approx(value, abs=1e-12), key
    np.testing.assert_allclose(report.per_query_ap, [e["ap"] for e in tie_aware], atol=1e-12)
    within = [[dist[i] <= r for i in range(4)] for r in range(bits + 1)]
    precision = [np.mean([(rel[i] & w[i]).sum() / w[i].sum() if w[i].any() else 0.0
                          for i in range(4)]) for w in within]
    recall = [np.mean([(rel[i] & w[i]).sum() / rel[i].sum() if rel[i].any() else 0.0
                       for i in range(4)]) for w in within]
    np.testing.assert_allclose(report.radius_precision, precision, atol=1e-12)
    np.testing.assert_allclose(report.radius_recall, recall, atol=1e-12)


def test_index_order_metrics_of_larger_multi_label_codes_are_calc_top_map() -> None:
    rng = np.random.default_rng(5)
    bits = 12
    q_codes, d_codes = binarize(rng.normal(size=(30, bits))), binarize(rng.normal(size=(400, bits)))
    q_set = LabelSet.from_lists(random_lists(1, 30, 6), 6)
    d_set = LabelSet.from_lists(random_lists(2, 400, 6), 6)
    spec = EvaluationSpec(knn_k=(1,), map_cutoffs=(50,), precision_k=())
    report = evaluate_codes(pack_codes(q_codes), pack_codes(d_codes), q_set, d_set, bits, spec,
                            index_order=True, chunk_size=7)
    dist = hamming_matrix(pack_codes(q_codes), pack_codes(d_codes))
    for key, topk in (("map@50_index_order", 50), ("map@all_index_order", 400)):
        assert report.metrics[key] == pytest.approx(
            calc_top_map(dist, q_set.multi_hot, d_set.multi_hot, topk), abs=1e-12)


def legacy_relevance(query: LabelSet, database: LabelSet) -> np.ndarray:
    """The relevance the evaluators used before label sets: class ids compared."""
    return np.asarray(query.ids)[:, None] == database.ids[None, :]


def legacy_votes(query: LabelSet, database: LabelSet) -> KnnVotes:
    """The kNN vote of before: the class ids themselves, largest id + 1 classes."""
    return KnnVotes(query.ids, database.ids, max(query.n_classes, database.n_classes))


def all_figures(q: np.ndarray, d: np.ndarray, yq: Any, yd: Any) -> list[Any]:
    """Every figure of the float, code and verification evaluators on one input."""
    codes_q, codes_d = pack_codes(binarize(q)), pack_codes(binarize(d))
    ids_d = np.arange(len(d))
    floats = evaluate_retrieval(q, d, yq, yd, "cosine", SPEC, query_ids=ids_d[:len(q)],
                                database_ids=ids_d, chunk_size=5)
    codes = evaluate_codes(codes_q, codes_d, yq, yd, q.shape[1], SPEC, index_order=True,
                           chunk_size=5)
    return [floats.metrics, floats.curve_precision, floats.curve_recall, floats.per_query_ap,
            codes.metrics, codes.radius_precision, codes.radius_recall, codes.per_query_ap,
            verification_metrics(q, yq, "cosine", seed=3, n=200)]


def assert_identical(first: list[Any], second: list[Any]) -> None:
    for a, b in zip(first, second, strict=True):
        if isinstance(a, dict):
            assert a == b  # floats compared exactly
        else:
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("seed", range(3))
def test_single_label_figures_are_bit_for_bit_those_of_before(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    q, d, yq, yd = random_case(seed, n_q=20, n_d=80, dim=8, ties=seed > 0, classes=4)
    as_ints = all_figures(q, d, yq, yd)
    assert "knn_acc@3" in as_ints[0] and "knn_acc@3_index_order" in as_ints[4]
    assert_identical(as_ints, all_figures(q, d, LabelSet.from_ids(yq), LabelSet.from_ids(yd)))
    assert_identical(as_ints, all_figures(q, d, np.eye(4, dtype=np.uint8)[yq],
                                          LabelSet.from_lists([[y] for y in yd], 9)))
    for module in (evaluate_module, codes_module):
        monkeypatch.setattr(module, "relevance", legacy_relevance)
        monkeypatch.setattr(module, "knn_votes", legacy_votes)
    assert_identical(as_ints, all_figures(q, d, yq, yd))


def test_unlabelled_items_are_relevant_to_nothing_and_never_a_right_vote() -> None:
    # 1-D: query 0 at x = 0 is unlabelled; query 1 at x = 0 has class 0.
    # database x = 1, 2, 3 with labels -1, 0, -1
    q, d = np.array([[0.0], [0.0]]), np.array([[1.0], [2.0], [3.0]])
    spec = EvaluationSpec(knn_k=(1, 3), map_cutoffs=(), precision_k=(1,))
    report = evaluate_retrieval(q, d, np.array([-1, 0]), np.array([-1, 0, -1]), "euclidean",
                                spec, workers=1)
    assert report.per_query_ap.tolist() == [0.0, 0.5]
    # query 1: its 1-NN is unlabelled (a vote for no class: wrong); among its 3-NN the
    # unlabelled items have 2 votes to class 0's 1 (wrong); query 0 is never right
    assert report.metrics["knn_acc@1"] == 0.0 and report.metrics["knn_acc@3"] == 0.0
    assert report.metrics["p@1"] == 0.0
    codes = evaluate_codes(pack_codes(np.array([[1, 1], [1, 1]])),
                           pack_codes(np.array([[1, -1], [1, 1], [-1, -1]])),
                           np.array([-1, 0]), np.array([-1, 0, -1]), 2, spec)
    assert codes.per_query_ap.tolist() == [0.0, 1.0]
    assert codes.metrics["knn_acc@1"] == 0.5 and codes.metrics["knn_acc@3"] == 0.0


# -- tuples and verification on label sets ---------------------------------------------------

LISTS = [[0, 1], [1], [2], [0], [], [3], [2, 3], [1, 2], [4], [0, 1, 2, 3, 4]]
# item 4 is unlabelled (takes no part); item 8 (class 4 alone) has no positive but serves as
# a negative; item 9 shares a label with every labelled item: no negative, never a negative


def triplet_probabilities(lists: list[list[int]]) -> dict[tuple[int, int, int], float]:
    """Every valid (anchor, positive, negative) with its probability under the documented
    scheme: a uniform eligible anchor, a uniform positive, a uniform negative."""
    labelled = [i for i in range(len(lists)) if lists[i]]
    options = {a: ([p for p in labelled if p != a and shares(lists[a], lists[p])],
                   [n for n in labelled if not shares(lists[a], lists[n])]) for a in labelled}
    eligible = [a for a, (pos, neg) in options.items() if pos and neg]
    return {(a, p, n): 1 / len(eligible) / len(options[a][0]) / len(options[a][1])
            for a in eligible for p in options[a][0] for n in options[a][1]}


@pytest.mark.parametrize("lists", [LISTS, [[2], [0], [2], [1], [0], [], [2], [3], [0], [2]]],
                         ids=["multi", "single-with-unlabelled"])
def test_triplets_are_uniform_over_all_valid_triplets(lists: list[list[int]]) -> None:
    draws = 200_000
    drawn = draw_triplets(LabelSet.from_lists(lists), draws, np.random.default_rng(1))
    assert_frequencies(Counter(map(tuple, drawn.tolist())), triplet_probabilities(lists), draws)


def test_the_relevance_draw_on_single_labels_is_the_class_draw_in_distribution() -> None:
    labels = np.array([2, 0, 2, 1, 0, 2, 3, 0, 2])  # test_offline's labels
    draws = 100_000
    drawn = _draw_by_relevance(LabelSet.from_ids(labels), draws, np.random.default_rng(2))
    expected = triplet_probabilities([[int(y)] for y in labels])
    assert_frequencies(Counter(map(tuple, drawn.tolist())), expected, draws)


def test_single_label_draws_are_those_of_before_and_skip_unlabelled_items() -> None:
    labels = np.array([2, 0, 2, 1, 0, 2, 3, 0, 2])
    before = draw_triplets(labels, 500, np.random.default_rng(4))
    assert np.array_equal(before, draw_triplets(LabelSet.from_ids(labels), 500,
                                                np.random.default_rng(4)))
    with_gaps = np.insert(labels, [0, 4, 9], -1)  # unlabelled at 0, 5 and 11
    kept = np.flatnonzero(with_gaps >= 0)
    assert np.array_equal(kept[before], draw_triplets(with_gaps, 500, np.random.default_rng(4)))


def test_multi_label_pairs_say_whether_they_share_a_label() -> None:
    first, second, same = draw_pairs(LabelSet.from_lists(LISTS), 3000,
                                     np.random.default_rng(0)).T
    assert 0.45 < same.mean() < 0.55 and (first != second).all()
    assert all(shares(LISTS[a], LISTS[b]) == bool(s)
               for a, b, s in zip(first, second, same, strict=True))
    assert not np.isin([first, second], [4]).any()


def test_verification_on_multi_label_sets() -> None:
    labels = LabelSet.from_lists(random_lists(0, 300, 6))
    perfect = labels.multi_hot.astype(np.float32)  # cosine: 0 < shared, 1 = nothing shared
    perfect[~labels.labelled] = 1.0  # never drawn; any non-zero vector
    assert verification_metrics(perfect, labels, "cosine", seed=0, n=2000) == {
        "triplet_acc": 1.0, "pair_auc": 1.0}
    noise = np.random.default_rng(1).normal(size=perfect.shape)
    metrics = verification_metrics(noise, labels, "cosine", seed=0, n=2000)
    assert 0.4 < metrics["triplet_acc"] < 0.6 and 0.4 < metrics["pair_auc"] < 0.6
    everyone_shares = LabelSet.from_lists([[0], [0, 1], [1, 0]])
    assert verification_metrics(perfect[:3], everyone_shares, "cosine", seed=0) == {}
    with pytest.raises(ConfigError, match="shares none with a third"):
        fixed_triplets(everyone_shares, 5, 0)

