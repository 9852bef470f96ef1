"""Classifier-output codes (Sablayrolles et al. 2017): the figures against a hand-computed
case and against a brute-force average over every order of the ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deephash.errors import DataError
from deephash.labels import LabelSet, relevance
from deephash.metrics import EvaluationSpec
from deephash.metrics.classifier_codes import class_ranks, code_length, evaluate_classifier_codes
from deephash.metrics.retrieval import average_precision, hits_at

SPEC = EvaluationSpec(knn_k=(1,), map_cutoffs=(2, 4), precision_k=(1, 3))


def brute_force(probabilities: np.ndarray, classes: np.ndarray, relevant: np.ndarray,
                spec: EvaluationSpec) -> dict[str, float]:
    """Every order of the database by descending probability of the item's class (ties in
    any order, all equally likely), enumerated; the tie-aware figures are the expectations
    (AP@k: expected precision sum over expected hits, the ratio of expectations), the
    index-order ones those of the stable order."""
    sums: dict[str, list[float]] = {}
    for p, rel in zip(probabilities, relevant, strict=True):
        score = p[classes]
        orders = [np.array(o) for o in itertools.permutations(range(len(classes)))
                  if np.all(np.diff(score[list(o)]) <= 0)]
        ranks = [np.flatnonzero(rel[o]) + 1 for o in orders]
        figures = {"map@all": np.mean([average_precision(r) for r in ranks])}
        for k in spec.map_cutoffs:
            precision_sum = np.mean([average_precision(r, k) * hits_at(r, np.array([k]))[0]
                                     for r in ranks])
            hits = np.mean([hits_at(r, np.array([k]))[0] for r in ranks])
            figures[f"map@{k}"] = precision_sum / hits if hits else 0.0
        for k in spec.precision_k:
            figures[f"p@{k}"] = np.mean([hits_at(r, np.array([k]))[0] for r in ranks]) / min(
                k, len(classes))
        stable = np.argsort(-score, kind="stable")
        first = np.flatnonzero(rel[stable]) + 1
        figures["map@all_index_order"] = average_precision(first)
        for k in spec.map_cutoffs:
            figures[f"map@{k}_index_order"] = average_precision(first, k)
        for k in spec.precision_k:
            figures[f"p@{k}_index_order"] = hits_at(first, np.array([k]))[0] / min(
                k, len(classes))
        for key, value in figures.items():
            sums.setdefault(key, []).append(float(value))
    return {key: float(np.mean(values)) for key, values in sums.items()}


def test_a_hand_computed_query_whose_top_class_stores_nothing() -> None:
    # top class 1 holds no database item; class 2 ranks 1 (items 1, 2), class 0 ranks 2
    # (items 0, 3); relevant: items 0 and 2 (label 0)
    probabilities = np.array([[0.2, 0.5, 0.3]])
    got = evaluate_classifier_codes(probabilities, np.array([0, 2, 2, 0]), [0], [0, 2, 0, 1],
                                    SPEC)
    expected = {
        # ties: relevant item 2 at position 1 or 2, item 0 at 3 or 4, each half the time
        "map@all": ((1 + 1 / 2) / 2 + (2 / 3 + 2 / 4) / 2) / 2,
        "map@2": 0.75 / 1.0, "map@4": (0.75 + 7 / 12) / 2, "p@1": 0.5, "p@3": 1.5 / 3,
        # index order 1, 2, 0, 3: relevant at ranks 2 and 3
        "map@all_index_order": (1 / 2 + 2 / 3) / 2, "map@2_index_order": 0.5,
        "map@4_index_order": (1 / 2 + 2 / 3) / 2, "p@1_index_order": 0.0,
        "p@3_index_order": 2 / 3, "bits": 2}
    assert got == pytest.approx(expected)


def test_equal_probabilities_tie_their_classes() -> None:
    assert class_ranks(np.array([[0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.5, 0.5, 0.5]])).tolist() \
        == [[0, 0, 2], [2, 1, 0], [0, 0, 0]]
    # classes 0 and 1 tie: the relevant item is at any of the first two places
    got = evaluate_classifier_codes(np.array([[0.4, 0.4, 0.2]]), np.array([2, 1, 0]), [0],
                                    [0, 1, 0], SPEC)
    assert got["map@all"] == pytest.approx(((1 + 1 / 2) / 2 + 2 / 3) / 2)
    assert got["map@all_index_order"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_brute_force_over_every_order_of_the_ties(seed: int, multi: bool) -> None:
    rng = np.random.default_rng(seed)
    n_query, n_database, n_classes = 5, 6, 4
    # coarse probabilities, so that classes tie within a query too
    probabilities = rng.integers(0, 3, (n_query, n_classes)).astype(np.float64) / 4
    classes = rng.integers(0, n_classes - 1, n_database)  # the last class stores nothing
    if multi:
        yq = LabelSet.from_multi_hot(rng.random((n_query, 3)) < 0.4)
        yd = LabelSet.from_multi_hot(rng.random((n_database, 3)) < 0.4)
    else:
        yq = LabelSet.from_ids(rng.integers(-1, 3, n_query), 3)  # -1: an unlabelled query
        yd = LabelSet.from_ids(rng.integers(0, 3, n_database), 3)
    got = evaluate_classifier_codes(probabilities, classes, yq, yd, SPEC, chunk_size=2)
    expected = brute_force(probabilities, classes, relevance(yq, yd), SPEC)
    assert got == pytest.approx({**expected, "bits": 2})


def test_a_query_never_retrieves_itself() -> None:
    rng = np.random.default_rng(5)
    probabilities = rng.random((4, 3)).round(1)
    classes, labels = rng.integers(0, 3, 7), rng.integers(0, 2, 7)
    ids = np.arange(7)
    got = evaluate_classifier_codes(probabilities, classes, labels[:4], labels, SPEC,
                                    query_ids=ids[:4], database_ids=ids)
    alone = [brute_force(probabilities[q:q + 1], classes[ids != q],
                         relevance(labels[q:q + 1], labels[ids != q]), SPEC)
             for q in range(4)]
    for key in ("map@all", "map@all_index_order", "p@3", "p@3_index_order"):
        assert got[key] == pytest.approx(np.mean([a[key] for a in alone]))


def test_code_length_is_a_class_id() -> None:
    assert [code_length(c) for c in (1, 2, 3, 8, 10, 100)] == [0, 1, 2, 3, 4, 7]


@pytest.mark.parametrize(("probabilities", "classes", "match"), [
    (np.ones((2, 3)), np.array([0, 1, 2]), r"\(1, C\)"),
    (np.array([[np.nan, 1.0, 0.0]]), np.array([0, 1, 2]), "NaN"),
    (np.ones((1, 3)), np.array([0, 1]), r"\(3,\) integers"),
    (np.ones((1, 3)), np.array([0.0, 1.0, 2.0]), "integers"),
    (np.ones((1, 3)), np.array([0, 1, 3]), r"\[0, 3\)"),
])
def test_bad_inputs_are_named(probabilities: np.ndarray, classes: np.ndarray,
                              match: str) -> None:
    with pytest.raises(DataError, match=match):
        evaluate_classifier_codes(probabilities, classes, [0], [0, 1, 0])
