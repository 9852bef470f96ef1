"""Label sets and relevance against Python sets, for single-, multi- and unlabelled images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deephash.errors import DataError
from deephash.growing import Growth
from deephash.labels import LabelSet, as_label_set, batch_relevance, relevance


def random_lists(seed: int, n: int, n_classes: int, most: int = 3) -> list[list[int]]:
    """Per-image label lists with 0..``most`` labels each (some empty, some multiple)."""
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(n_classes, int(rng.integers(0, most + 1)), replace=False).tolist())
            for _ in range(n)]


def set_relevance(query: list[list[int]], database: list[list[int]]) -> np.ndarray:
    """The definition, one pair at a time: a shared label."""
    return np.array([[bool(set(a) & set(b)) for b in database] for a in query],
                    dtype=bool).reshape(len(query), len(database))


def test_single_label_ids() -> None:
    labels = LabelSet.from_ids(np.array([2, 0, -1, 2], dtype=np.int32))
    assert labels.is_single and len(labels) == 4 and labels.n_classes == 3
    assert labels.ids.dtype == np.int64 and labels.ids.tolist() == [2, 0, -1, 2]
    assert labels.labelled.tolist() == [True, True, False, True]
    assert labels.n_labels.tolist() == [1, 1, 0, 1]
    assert labels.lists() == [[2], [0], [], [2]]
    assert labels.multi_hot.tolist() == [[False, False, True], [True, False, False],
                                         [False, False, False], [False, False, True]]
    assert LabelSet.from_ids([1, 1], n_classes=5).n_classes == 5
    assert LabelSet.from_ids(np.array([0.0, 3.0])).ids.tolist() == [0, 3]
    empty = LabelSet.from_ids(np.array([]))
    assert len(empty) == 0 and empty.n_classes == 0 and empty.multi_hot.shape == (0, 0)


def test_multi_hot_and_lists_build_the_same_set() -> None:
    lists = [[0, 2], [], [1], [2, 0, 2]]
    hot = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]], dtype=np.uint8)
    from_hot, from_lists = LabelSet.from_multi_hot(hot), LabelSet.from_lists(lists, 4)
    assert from_hot == from_lists and not from_hot.is_single
    assert from_hot.n_classes == 4 and from_hot.lists() == [[0, 2], [], [1], [0, 2]]
    assert from_hot.labelled.tolist() == [True, False, True, True]
    assert from_hot.n_labels.tolist() == [2, 0, 1, 2]
    with pytest.raises(ValueError, match="multi-label"):
        _ = from_hot.ids
    assert LabelSet.from_lists(lists).n_classes == 3  # largest id + 1


def test_at_most_one_label_per_image_is_stored_as_ids() -> None:
    hot = np.array([[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    labels = LabelSet.from_multi_hot(hot)
    assert labels.is_single and labels.ids.tolist() == [2, -1, 0]
    assert labels.n_classes == 4  # the matrix's width, not the largest id + 1
    assert np.array_equal(labels.multi_hot, hot)
    assert LabelSet.from_lists([[3], [], [1, 1]]) == LabelSet.from_ids([3, -1, 1])
    assert LabelSet.from_multi_hot(np.zeros((2, 0), dtype=bool)).ids.tolist() == [-1, -1]


def test_row_selection() -> None:
    labels = LabelSet.from_lists([[0, 1], [2], [1], [], [0, 2]], 4)
    picked = labels[np.array([1, 2, 3])]
    assert picked.is_single and picked.ids.tolist() == [2, 1, -1] and picked.n_classes == 4
    assert labels[np.array([True, False, False, False, True])].lists() == [[0, 1], [0, 2]]
    assert labels[1:3].lists() == [[2], [1]]
    single = LabelSet.from_ids([4, 0, 2])
    assert single[[2, 0]].ids.tolist() == [2, 4] and single[[2, 0]].n_classes == 5
    with pytest.raises(TypeError, match="slice"):
        labels[0]  # type: ignore[index]


@pytest.mark.parametrize("grown", [False, True], ids=["concatenated", "grown"])
def test_followed_by_is_the_label_set_of_all_lists(grown: bool) -> None:
    """Every change of form and width, against from_lists of the joined lists: single then
    single, single then multi, multi then single, multi then multi, new classes, nothing."""
    growth = Growth()
    lists: list[list[int]] = [[0], [], [2]]
    labels = LabelSet.from_lists(lists, 3)
    for more, n_classes in (([[1], [2]], 3), ([[0, 1], []], 3), ([[2]], 3),
                            ([[1, 2], [0]], 3), ([], 3), ([[0, 4]], 5), ([[3]], 6),
                            ([[5], [1, 5]], 0)):
        more_set = LabelSet.from_lists(more, max([n_classes, *(max(m) + 1 for m in more if m)]))
        before = labels
        labels = labels.followed_by(more_set, n_classes, growth.append if grown else None)
        lists = lists + more
        expected = LabelSet.from_lists(lists, max(n_classes, before.n_classes,
                                                  more_set.n_classes))
        assert labels == expected and labels.is_single == expected.is_single
        assert labels.n_classes == expected.n_classes and labels.lists() == lists
        assert before.lists() == lists[:len(before)]  # the set before is unchanged


def test_a_grown_multi_hot_set_copies_no_old_row() -> None:
    """O(len(more)) per append once the matrix has spare room, as the ids do."""
    growth = Growth()
    labels = LabelSet.from_lists([[0, 1], [2]] * 5_000, 3).followed_by(
        LabelSet.from_lists([[1]], 3), grow=growth.append)  # the first: copied into room
    for expected_single, more in ((False, [[2], [0, 2]]), (False, [[]])):
        grown = labels.followed_by(LabelSet.from_lists(more, 3), grow=growth.append)
        assert grown.is_single == expected_single
        assert np.shares_memory(grown.multi_hot[:len(labels)], labels.multi_hot)
        assert not grown.multi_hot.flags.writeable
        assert grown.lists()[len(labels):] == more and len(labels.lists()) == len(labels)
        labels = grown


def test_label_sets_are_read_only_copies() -> None:
    ids = np.array([0, 1, 1])
    hot = np.array([[1, 1], [0, 1]], dtype=bool)
    single, multi = LabelSet.from_ids(ids), LabelSet.from_multi_hot(hot)
    ids[0], hot[0, 0] = 1, False
    assert single.ids.tolist() == [0, 1, 1] and multi.lists()[0] == [0, 1]
    for array in (single.ids, single.multi_hot, multi.multi_hot):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1


@pytest.mark.parametrize(("build", "message"), [
    (lambda: LabelSet.from_ids([0, -2]), "use -1 for unlabelled"),
    (lambda: LabelSet.from_ids([0, 3], n_classes=3), "outside the 3 classes"),
    (lambda: LabelSet.from_ids([0.5, 1.0]), "integers"),
    (lambda: LabelSet.from_ids(np.array(["cat"])), "integers"),
    (lambda: LabelSet.from_ids(np.zeros((2, 2), dtype=int)), "one per image"),
    (lambda: LabelSet.from_multi_hot(np.array([[0, 2]])), "only 0 and 1"),
    (lambda: LabelSet.from_multi_hot(np.array([0, 1])), r"\(N, C\)"),
    (lambda: LabelSet.from_lists([[0], [-1]]), "negative"),
    (lambda: LabelSet.from_lists([[0], [5]], n_classes=5), "outside the 5 classes"),
])
def test_bad_labels_are_refused(build: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        build()  # type: ignore[operator]


def test_as_label_set_reads_the_shape() -> None:
    labels = LabelSet.from_ids([1, 0])
    assert as_label_set(labels) is labels
    assert as_label_set(np.array([1, 0])) == labels
    assert as_label_set(torch.tensor([1, 0])) == labels
    assert not as_label_set(np.array([[1, 1], [0, 1]])).is_single


@pytest.mark.parametrize("seed", range(6))
def test_relevance_is_a_shared_label(seed: int) -> None:
    rng = np.random.default_rng(seed)
    multi_q, multi_d = random_lists(seed, 9, 5), random_lists(seed + 100, 13, 6)
    single_q = [[int(c)] if c >= 0 else [] for c in rng.integers(-1, 5, 9)]
    single_d = [[int(c)] if c >= 0 else [] for c in rng.integers(-1, 7, 13)]
    for q_lists, d_lists in ((single_q, single_d), (single_q, multi_d), (multi_q, single_d),
                             (multi_q, multi_d)):
        q, d = LabelSet.from_lists(q_lists), LabelSet.from_lists(d_lists)
        assert q.is_single == (q_lists is single_q) and d.is_single == (d_lists is single_d)
        expected = set_relevance(q_lists, d_lists)
        got = relevance(q, d)
        assert got.dtype == np.bool_ and np.array_equal(got, expected)
        assert np.array_equal(relevance(d, q), expected.T)
        for kind in (q, d):  # the tensor version, batch against itself, on either form
            tensor = batch_relevance(kind.as_tensor())
            assert np.array_equal(tensor.numpy(), set_relevance(kind.lists(), kind.lists()))


def test_single_label_relevance_is_label_equality_exactly() -> None:
    rng = np.random.default_rng(0)
    q, d = rng.integers(0, 10, 50), rng.integers(0, 10, 300)
    assert np.array_equal(relevance(q, d), q[:, None] == d[None, :])
    assert np.array_equal(relevance(LabelSet.from_ids(q), LabelSet.from_ids(d)),
                          q[:, None] == d[None, :])
    # the column and matmul paths on one-hot rows, made multi-label by a second label in a
    # class of their own (10 for the queries, 11 for the database)
    hot_q, hot_d = np.eye(12, dtype=bool)[q], np.eye(12, dtype=bool)[d]
    hot_q[0, 10] = hot_d[0, 11] = True
    multi_q, multi_d = LabelSet.from_multi_hot(hot_q), LabelSet.from_multi_hot(hot_d)
    assert not multi_q.is_single and not multi_d.is_single
    for query, database in ((multi_q, d), (q, multi_d), (multi_q, multi_d)):
        assert np.array_equal(relevance(query, database), q[:, None] == d[None, :])


def test_unlabelled_images_are_relevant_to_nothing() -> None:
    single = LabelSet.from_ids([-1, 0, -1])
    assert relevance(single, single).tolist() == [[False, False, False], [False, True, False],
                                                  [False, False, False]]
    multi = LabelSet.from_lists([[], [0, 1], []])
    assert not relevance(multi, multi)[[0, 2]].any() and not relevance(multi, single)[0].any()
    ids = torch.tensor([-1, 0, -1])
    assert not batch_relevance(ids)[0].any() and not batch_relevance(ids)[:, 0].any()


def test_batch_relevance_against_another_batch_and_bad_shapes() -> None:
    a = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=torch.uint8)
    assert batch_relevance(a, b).tolist() == [[True, False, True], [False, False, False]]
    assert batch_relevance(torch.tensor([2, 1]), torch.tensor([1, 1, 2])).tolist() == [
        [False, False, True], [True, True, False]]
    with pytest.raises(ValueError, match="ids with ids"):
        batch_relevance(torch.tensor([0, 1]), a)


def test_classes_beyond_the_other_sets_width_match_nothing() -> None:
    narrow = LabelSet.from_lists([[0, 1], [1]], 2)
    wide = LabelSet.from_lists([[1, 4], [3], [0]], 5)
    assert relevance(narrow, wide).tolist() == [[True, False, True], [True, False, False]]
    assert relevance(LabelSet.from_ids([4, 1]), narrow).tolist() == [[False, False],
                                                                      [True, True]]
