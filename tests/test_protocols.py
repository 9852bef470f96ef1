from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deephash.data import PROTOCOLS, Splits, make_splits
from deephash.data.protocols import dtsh_setting1
from deephash.errors import DataError


def cifar_like_pool() -> tuple[np.ndarray, np.ndarray]:
    """60,000 labels as CIFAR-10 orders them: 50,000 training, then 10,000 test."""
    rng = np.random.default_rng(1)
    train = rng.permutation(np.repeat(np.arange(10), 5000))
    test = rng.permutation(np.repeat(np.arange(10), 1000))
    return np.concatenate([train, test]), np.r_[np.zeros(50000, bool), np.ones(10000, bool)]


def per_class(labels: np.ndarray, indices: np.ndarray) -> list[int]:
    return np.bincount(labels[indices], minlength=10).tolist()


def test_cifar10_protocol_sizes_and_strata() -> None:
    labels, is_test = cifar_like_pool()
    s = make_splits("cifar10", labels, is_test, seed=0)
    assert s.sizes() == {"train": 45000, "val": 5000, "query": 10000, "database": 50000}
    assert per_class(labels, s.val) == [500] * 10
    assert np.array_equal(s.query, np.arange(50000, 60000))
    assert np.array_equal(s.database, np.arange(50000))
    assert not np.intersect1d(s.train, s.val).size
    assert np.array_equal(np.union1d(s.train, s.val), s.database)


def test_dtsh1_protocol_sizes_and_strata() -> None:
    labels, is_test = cifar_like_pool()
    s = make_splits("dtsh-1", labels, is_test, seed=0)
    assert s.sizes() == {"train": 4500, "val": 500, "query": 1000, "database": 59000}
    assert per_class(labels, s.query) == [100] * 10
    assert per_class(labels, s.train) == [450] * 10
    assert per_class(labels, s.val) == [50] * 10
    assert not np.intersect1d(s.query, s.database).size
    assert np.array_equal(np.union1d(s.query, s.database), np.arange(60000))
    assert not np.intersect1d(s.train, s.val).size
    assert np.isin(np.union1d(s.train, s.val), s.database).all()
    assert is_test[s.query].any() and not is_test[s.query].all()  # drawn from both parts


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_reproducible_from_the_seed(name: str) -> None:
    labels, is_test = cifar_like_pool()
    a, b = (make_splits(name, labels, is_test, seed=7) for _ in range(2))
    c = make_splits(name, labels, is_test, seed=8)
    for split in ("train", "val", "query", "database"):
        assert np.array_equal(getattr(a, split), getattr(b, split))
        assert np.all(np.diff(getattr(a, split)) > 0)  # sorted, no duplicates
    assert not np.array_equal(a.val, c.val)


def test_json_round_trip(tmp_path: Path) -> None:
    labels, is_test = cifar_like_pool()
    s = make_splits("dtsh-1", labels, is_test, seed=3)
    s.to_json(tmp_path / "splits.json", extra={"dataset": "x"})
    back = Splits.from_json(tmp_path / "splits.json")
    assert back.protocol == "dtsh-1" and back.seed == 3
    assert all(np.array_equal(getattr(s, k), getattr(back, k)) for k in ("train", "val", "query"))


def test_small_classes_get_clear_errors() -> None:
    labels = np.array([0, 0, 0, 1, 0, 1])
    is_test = np.array([False, False, False, False, True, True])
    with pytest.raises(DataError, match=r"class 'dog' has 1 image.*at least 2"):
        make_splits("cifar10", labels, is_test, seed=0, classes=["cat", "dog"])
    with pytest.raises(DataError, match="needs at least 600 per class"):
        make_splits("dtsh-1", labels, is_test, seed=0)


def test_dtsh1_counts_are_parameters() -> None:
    labels = np.repeat(np.arange(3), 20)
    s = dtsh_setting1(labels, np.zeros(60, bool), seed=0, queries_per_class=5,
                      train_per_class=10, val_fraction=0.2)
    assert s.sizes() == {"train": 24, "val": 6, "query": 15, "database": 45}
