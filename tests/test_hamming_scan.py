"""The exact Hamming scan of one query (deephash.index.scan) against a brute-force unpackbits
reference, across block edges, thread splits and code widths; and the ranker restricted to
candidate rows against ranking those rows as a database of their own."""

from __future__ import annotations

import numpy as np
import pytest

from deephash.hashing.codes import as_words
from deephash.index import scan as scan_module
from deephash.index.rerank import CodeRanker
from deephash.index.scan import distance_dtype, scan, within


def reference(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.unpackbits(codes ^ query[None, :], axis=1).sum(axis=1)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 rows and a parallel split from 50 rows: every edge case at test sizes."""
    monkeypatch.setattr(scan_module, "BLOCK", 7)
    monkeypatch.setattr(scan_module, "PARALLEL_ROWS", 50)


@pytest.mark.parametrize("bits", [12, 48, 64, 96, 264])
@pytest.mark.parametrize("n", [1, 7, 8, 49, 50, 333])
def test_scan_matches_brute_force(bits: int, n: int, small_blocks: None) -> None:
    rng = np.random.default_rng(bits * 1000 + n)
    codes = rng.integers(0, 256, (n, -(-bits // 8)), dtype=np.uint8)
    if bits % 8:
        codes[:, -1] &= np.uint8((0xFF << (8 - bits % 8)) & 0xFF)  # packbits: high bits first
    query = codes[rng.integers(n)] ^ rng.integers(0, 2, codes.shape[1], dtype=np.uint8)
    distances, counts = scan(as_words(codes), as_words(query[None])[0], bits)
    expected = reference(codes, query)
    assert distances.dtype == distance_dtype(bits)
    np.testing.assert_array_equal(distances, expected)
    np.testing.assert_array_equal(counts, np.bincount(expected, minlength=bits + 1))
    for limit in (-1, 0, int(np.median(expected)), bits):
        np.testing.assert_array_equal(within(distances, limit), np.flatnonzero(expected <= limit))


def test_scan_of_no_rows() -> None:
    distances, counts = scan(np.zeros((0, 1), np.uint64), np.zeros(1, np.uint64), 48)
    assert len(distances) == 0 and counts.tolist() == [0] * 49
    assert len(within(distances, 3)) == 0


@pytest.mark.parametrize("rerank", ["ties", "none", 25])
def test_ranking_candidate_rows_is_ranking_them_alone(rerank: str | int,
                                                      small_blocks: None) -> None:
    """``rows`` ranks a subset exactly as a database made of it would, positions mapped back
    (the random tie key is the row's, so the order is the same as the full ranker's among
    them)."""
    from deephash.distances import as_distance

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 4, (400, 2), dtype=np.uint8)  # 16 bits, few values: many ties
    outputs = rng.standard_normal((400, 16)).astype(np.float16)
    full = CodeRanker(codes, 16, outputs, as_distance("euclidean"), rerank)
    queries = codes[:6]
    subsets = [np.sort(rng.choice(400, size, replace=False)) for size in (3, 60, 150, 0, 399, 1)]
    ranked = full.rank(queries, 10, outputs[:6].astype(np.float32), rows=subsets)
    for q, subset in enumerate(subsets):
        alone = CodeRanker(codes[subset], 16, outputs[subset], as_distance("euclidean"), rerank)
        hamming = reference(codes[subset], codes[q])
        kept = min(10, len(subset))
        if kept == 0:
            assert (ranked.positions[q] == -1).all() and ranked.tie_distance[q] == -1
            continue
        tie = int(np.sort(hamming)[kept - 1])
        assert ranked.tie_distance[q] == tie
        assert ranked.tied[q] == (hamming == tie).sum()
        got = ranked.positions[q][:kept]
        assert set(got) <= set(subset)
        np.testing.assert_array_equal(ranked.distances[q][:kept],
                                      reference(codes[got], codes[q]))
        if rerank != "ties":
            continue
        # ties broken by the outputs' distance: the same as the full ranker restricted
        expected = alone.rank(queries[q:q + 1], 10, outputs[q:q + 1].astype(np.float32))
        np.testing.assert_array_equal(ranked.distances[q], expected.distances[0])
        np.testing.assert_array_equal(got, subset[expected.positions[0][:kept]])


@pytest.mark.parametrize("n", [5, 2000, 50_000])
def test_smallest_lexicographic_is_the_head_of_lexsort(n: int) -> None:
    """Against numpy's full lexsort, with heavy ties in the leading keys (a few Hamming
    distances, float distances repeated) and a last key without repeats (random keys)."""
    from deephash.index.rerank import smallest_lexicographic

    rng = np.random.default_rng(n)
    hamming = rng.integers(0, 3, n).astype(np.uint8)
    distance = rng.integers(0, 5, n).astype(np.float32) / 4
    unique = rng.permutation(n).astype(np.uint64)
    for keys in ([hamming, distance, unique], [distance, unique], [hamming, unique],
                 [np.zeros(n, np.uint8), unique]):
        for m in (1, 10, 999, n):
            np.testing.assert_array_equal(smallest_lexicographic(keys, m),
                                          np.lexsort(tuple(keys[::-1]))[:m])
