"""The one ranking of codes (``deephash.index.rerank``): Hamming, ties by continuous outputs,
else in a seeded random order; exact tie groups; tie counts; against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from deephash.distances import as_distance
from deephash.hashing.codes import as_words, hamming_matrix, pack_codes
from deephash.index import rerank
from deephash.index.rerank import CodeRanker, random_keys
from deephash.registries import parse_rerank

BITS = 8


def codes_at(distances: list[int]) -> np.ndarray:
    """Packed 8-bit codes at the given Hamming distances from the all-zero query code."""
    bits = np.zeros((len(distances), BITS), dtype=np.uint8)
    for row, distance in enumerate(distances):
        bits[row, :distance] = 1
    return np.packbits(bits, axis=1)


QUERY = np.zeros((1, 1), dtype=np.uint8)


def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 items: one at distance 0, ten tied at 2 whose outputs lie ever nearer the query
    the later they are in the pool, one at 5; the query's output is the origin."""
    distances = [0] + [2] * 10 + [5]
    outputs = np.zeros((12, 3), dtype=np.float16)
    outputs[1:11, 0] = np.arange(10, 0, -1)  # item 1 farthest .. item 10 nearest
    outputs[11, 0] = 0.5  # nearest output of all, but far in Hamming
    return codes_at(distances), outputs, np.zeros((1, 3), dtype=np.float32)


def test_a_planted_tie_is_ordered_by_the_continuous_outputs() -> None:
    codes, outputs, query_output = planted()
    ranker = CodeRanker(codes, BITS, outputs, as_distance("euclidean"))
    ranked = ranker.rank(QUERY, 4, query_output)
    # Hamming first (item 0), then the tied items nearest in output: 10, 9, 8 -- the last
    # ones of the pool, so only an exact tie group (every item at d_k) finds them
    assert ranked.positions.tolist() == [[0, 10, 9, 8]]
    assert ranked.distances.tolist() == [[0, 2, 2, 2]]
    assert ranked.tie_distance.tolist() == [2] and ranked.tied.tolist() == [10]
    assert ranked.tied_shown.tolist() == [3] and ranker.reranks(query_output)


def test_rerank_r_orders_the_r_nearest_by_the_continuous_outputs_alone() -> None:
    codes, outputs, query_output = planted()
    ranker = CodeRanker(codes, BITS, outputs, as_distance("euclidean"), rerank=12)
    assert ranker.rank(QUERY, 3, query_output).positions.tolist() == [[0, 11, 10]]
    # R = 2 is completed to the whole group tied at the 2nd distance: item 11 stays out
    ranker = CodeRanker(codes, BITS, outputs, as_distance("euclidean"), rerank=2)
    assert ranker.rank(QUERY, 3, query_output).positions.tolist() == [[0, 10, 9]]


@pytest.mark.parametrize("outputs_kept", [True, False])
def test_without_reranking_ties_break_in_a_seeded_random_order_not_pool_order(
        outputs_kept: bool) -> None:
    codes, outputs, query_output = planted()
    codes = np.concatenate([codes, codes_at([2] * 30)])  # 40 items tied at 2
    outputs = np.concatenate([outputs, np.ones((30, 3), dtype=np.float16)])
    if outputs_kept:  # --rerank none ignores the outputs
        ranker = CodeRanker(codes, BITS, outputs, as_distance("euclidean"), rerank="none")
    else:  # an old index folder, a run without saved outputs
        ranker = CodeRanker(codes, BITS)
    assert not ranker.reranks(query_output)
    first = ranker.rank(QUERY, 41, query_output).positions[0]
    again = ranker.rank(QUERY, 41, query_output).positions[0]
    assert np.array_equal(first, again)  # deterministic
    assert first[0] == 0 and sorted(first[1:]) == [*range(1, 11), *range(12, 42)]
    assert first[1:].tolist() != sorted(first[1:])  # not pool order
    other = CodeRanker(codes, BITS, seed=1).rank(QUERY, 41).positions[0]
    assert sorted(other) == sorted(first) and other.tolist() != first.tolist()
    keys = random_keys(first[1:], np.zeros(1, dtype=np.uint64), 0)
    assert (np.diff(keys.astype(np.float64)) > 0).all()  # the order is the keys' order


def test_tie_counts_on_a_hand_built_case() -> None:
    codes = codes_at([3, 1, 2, 0, 2, 1, 2])  # distances 0, 1, 1, 2, 2, 2, 3
    ranked = CodeRanker(codes, BITS).rank(np.concatenate([QUERY, codes[:1]]), 4)
    assert ranked.tie_distance[0] == 2 and ranked.tied[0] == 3 and ranked.tied_shown[0] == 1
    assert ranked.distances[0].tolist() == [0, 1, 1, 2]
    assert sorted(ranked.positions[0, :3].tolist()) == [1, 3, 5]
    # the second query is item 0's code (bits 11100000): distances 0, 2, 1, 3, 1, 2, 1
    assert ranked.tie_distance[1] == 1 and ranked.tied[1] == 3 and ranked.tied_shown[1] == 3
    assert ranked.positions[1, 0] == 0 and sorted(ranked.positions[1, 1:]) == [2, 4, 6]
    second = CodeRanker(codes, BITS).rank(codes[:1], 3)
    assert (second.tie_distance[0], second.tied[0], second.tied_shown[0]) == (1, 3, 2)
    whole = CodeRanker(codes, BITS).rank(QUERY, 7)
    assert whole.tied_shown[0] == whole.tied[0] == 1  # the last group fits whole


def test_k_past_the_database_and_an_empty_database() -> None:
    ranked = CodeRanker(codes_at([1, 0]), BITS).rank(QUERY, 4)
    assert ranked.positions.tolist() == [[1, 0, -1, -1]]
    assert ranked.distances.tolist() == [[0, 1, -1, -1]]
    empty = CodeRanker(np.empty((0, 1), dtype=np.uint8), BITS).rank(QUERY, 2)
    assert empty.positions.tolist() == [[-1, -1]] and empty.tied.tolist() == [0]


@pytest.mark.parametrize("chunk", [rerank.RANK_CHUNK, 7], ids=["one-chunk", "chunks-of-7"])
@pytest.mark.parametrize(("distance", "bits"), [("euclidean", 12), ("neg-half-inner", 16),
                                                ("cosine", 7)])
def test_against_a_brute_force_sort_of_the_whole_database(
        distance: str, bits: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against one lexsort of every item; the continuous distances of the candidates
    compared in chunks (of 7 rows: many, one short) give the same order as in one go."""
    monkeypatch.setattr(rerank, "RANK_CHUNK", chunk)
    rng = np.random.default_rng(bits)
    relaxed = np.tanh(rng.normal(size=(300, bits)))
    queries = np.tanh(rng.normal(size=(5, bits)))
    codes, query_codes = pack_codes(relaxed >= 0), pack_codes(queries >= 0)
    outputs = relaxed.astype(np.float16)
    metric = as_distance(distance)
    ranked = CodeRanker(codes, bits, outputs, metric).rank(query_codes, 25, queries)
    hamming = hamming_matrix(query_codes, codes)
    for q in range(5):
        continuous = metric.ranking_matrix(queries[q:q + 1].astype(np.float32),
                                           outputs.astype(np.float32))[0]
        keys = random_keys(np.arange(300), as_words(query_codes[q:q + 1])[0], 0)  # last resort
        expected = np.lexsort((keys, continuous, hamming[q]))[:25]
        assert ranked.positions[q].tolist() == expected.tolist()
        d_k = np.sort(hamming[q])[24]
        assert ranked.tied[q] == (hamming[q] == d_k).sum()
        assert ranked.tied_shown[q] == 25 - (hamming[q] < d_k).sum()


@pytest.mark.parametrize(("text", "expected"), [("ties", "ties"), ("none", "none"),
                                                ("100", 100), (" 7 ", 7)])
def test_parse_rerank(text: str, expected: str | int) -> None:
    assert parse_rerank(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "some", "", "1.5"])
def test_parse_rerank_refuses_anything_else(text: str) -> None:
    from deephash.errors import ConfigError

    with pytest.raises(ConfigError, match="is not ties, none or a positive number"):
        parse_rerank(text)
