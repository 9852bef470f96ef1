"""deephash.growing: appended rows equal np.concatenate, old views never change, a branch
copies, a wider unicode dtype reallocates, and an append within capacity copies no old row;
a grown CodeRanker ranks as one built over all codes."""

from __future__ import annotations

import numpy as np
import pytest

from deephash.distances import as_distance
from deephash.growing import GrowingArray, Growth
from deephash.index.rerank import CodeRanker


@pytest.mark.parametrize("shape", [(), (3,)])
def test_appends_equal_concatenate_and_old_views_keep_their_rows(shape: tuple[int, ...]
                                                                  ) -> None:
    rng = np.random.default_rng(0)
    grower = GrowingArray()
    view = rng.integers(0, 255, (5, *shape)).astype(np.uint8)
    expected = view.copy()
    kept: list[tuple[np.ndarray, np.ndarray]] = [(view, expected)]
    for _ in range(60):
        rows = rng.integers(0, 255, (int(rng.integers(0, 40)), *shape)).astype(np.uint8)
        view = grower.append(view, rows)
        expected = np.concatenate([expected, rows])
        assert view.dtype == np.uint8 and np.array_equal(view, expected)
        kept.append((view, expected))
    for old, contents in kept:  # every view handed out still holds exactly its rows
        assert np.array_equal(old, contents)
    assert grower.capacity <= 2 * len(view) + 16


def test_an_append_within_capacity_copies_no_old_row() -> None:
    grower = GrowingArray()
    first = grower.append(np.zeros((100_000, 8), np.uint8), np.ones((10, 8), np.uint8))
    second = grower.append(first, np.full((1_000, 8), 2, np.uint8))
    assert np.shares_memory(first, second[:len(first)])  # the old rows were not copied
    assert first.__array_interface__["data"] == second.__array_interface__["data"]
    assert len(first) == 100_010 and (second[100_010:] == 2).all() and (first[-10:] == 1).all()


def test_a_branch_copies_and_leaves_the_newer_view_alone() -> None:
    grower = GrowingArray()
    base = grower.append(np.arange(4), np.arange(4, 8))
    newer = grower.append(base, np.array([100, 101]))
    branch = grower.append(base, np.array([200]))  # after the older view: must not overwrite
    assert newer.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 100, 101]
    assert branch.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 200]
    assert not np.shares_memory(branch, newer)
    later = grower.append(branch, np.array([300]))  # the grower follows the branch
    assert np.shares_memory(later, branch) and newer.tolist()[-2:] == [100, 101]


def test_a_foreign_view_of_the_same_length_is_copied() -> None:
    grower = GrowingArray()
    grown = grower.append(np.zeros(3, np.int64), np.ones(2, np.int64))
    other = np.full(5, 7, np.int64)  # as long as the latest view, not of its buffer
    assert grower.append(other, np.array([9])).tolist() == [7, 7, 7, 7, 7, 9]
    assert grown.tolist() == [0, 0, 0, 1, 1]


def test_a_longer_path_widens_the_unicode_dtype() -> None:
    grower = GrowingArray()
    paths = grower.append(np.array(["a/1.png", "a/2.png"]), np.array(["b/3.png"]))
    longer = grower.append(paths, np.array(["added/a-much-longer-name.jpeg"]))
    assert longer.tolist() == ["a/1.png", "a/2.png", "b/3.png", "added/a-much-longer-name.jpeg"]
    assert paths.tolist() == ["a/1.png", "a/2.png", "b/3.png"]
    assert longer.dtype.itemsize // 4 == len("added/a-much-longer-name.jpeg")
    assert grower.append(longer, np.array(["c"])).dtype == longer.dtype


def test_rows_of_another_width_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot follow"):
        GrowingArray().append(np.zeros((2, 3)), np.zeros((1, 4)))


def test_growth_keeps_one_grower_per_name() -> None:
    growth = Growth()
    a = growth.append("a", np.zeros(2), np.ones(1))
    b = growth.append("b", np.zeros(2), np.ones(1))
    assert not np.shares_memory(a, b)
    assert np.shares_memory(growth.append("a", a, np.ones(1))[:3], a)


def test_an_extended_ranker_ranks_as_one_built_over_all_codes() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (300, 6), dtype=np.uint8)  # 48 bits
    outputs = rng.standard_normal((300, 48)).astype(np.float16)
    queries, query_outputs = codes[:7] ^ 1, outputs[:7].astype(np.float32)
    distance = as_distance("euclidean")
    for rerank in ("ties", "none", 20):
        ranker = CodeRanker(codes[:100], 48, outputs[:100], distance, rerank)
        old = ranker.rank(queries, 10, query_outputs).positions
        for start, stop in ((100, 101), (101, 180), (180, 300)):
            ranker = ranker.extended(codes[start:stop], outputs[:stop])
        fresh = CodeRanker(codes, 48, outputs, distance, rerank)
        assert ranker.size == 300 and np.array_equal(ranker.words, fresh.words)
        for grown, built in ((ranker.rank(queries, 10, query_outputs),
                              fresh.rank(queries, 10, query_outputs)),):
            assert np.array_equal(grown.positions, built.positions)
            assert np.array_equal(grown.tied, built.tied)
        first = CodeRanker(codes[:100], 48, outputs[:100], distance, rerank)
        assert np.array_equal(first.rank(queries, 10, query_outputs).positions, old)
    with pytest.raises(ValueError, match="continuous outputs"):
        CodeRanker(codes[:10], 48, outputs[:10]).extended(codes[10:12], outputs[:11])
