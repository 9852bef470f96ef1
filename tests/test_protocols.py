from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from deephash.data import PROTOCOLS, Splits, make_splits
from deephash.data.protocols import dtsh_setting1, strata, train_test_protocol
from deephash.errors import ConfigError, DataError
from deephash.labels import LabelSet
from deephash.registries import check_protocol, parse_protocol


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


@pytest.mark.parametrize("name", ["cifar10", "dtsh-1"])
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


# --- single-label splits are what they always were -----------------------------------------

def _digest(s: Splits) -> str:
    digest = hashlib.sha256()
    for name in ("train", "val", "query", "database"):
        digest.update(getattr(s, name).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def _uneven_pool() -> tuple[np.ndarray, np.ndarray]:
    """1,234 images of 7 classes of uneven sizes, a random 20 % test part."""
    rng = np.random.default_rng(5)
    return rng.integers(0, 7, 1234), rng.random(1234) < 0.2


@pytest.mark.parametrize("name, seed, digest", [
    ("cifar10", 0, "40d99b438f41bb1f"), ("cifar10", 7, "6f624929fdd6e08b"),
    ("dtsh-1", 0, "570ed627fed0e60d"), ("dtsh-1", 7, "3173022d61c0704d")])
def test_single_label_splits_are_pinned(name: str, seed: int, digest: str) -> None:
    """The digests of the splits deephash drew before label sets and multi-label draws
    (computed with the code of commit f683142): unchanged bit for bit."""
    labels, is_test = cifar_like_pool()
    assert _digest(make_splits(name, labels, is_test, seed=seed)) == digest
    # the LabelSet form and the auto default draw the same
    assert _digest(make_splits(name, LabelSet.from_ids(labels), is_test, seed=seed)) == digest
    if name == "cifar10":
        assert _digest(make_splits("auto", labels, is_test, seed=seed)) == digest


def test_uneven_single_label_splits_are_pinned() -> None:
    labels, is_test = _uneven_pool()
    assert _digest(make_splits("cifar10", labels, is_test, seed=3)) == "3e505f74c13f7f92"
    assert _digest(dtsh_setting1(labels, is_test, 3, queries_per_class=5,
                                 train_per_class=20)) == "6474343c1faa59a6"
    assert _digest(train_test_protocol(labels, is_test, 3, val_fraction=0.25)) == \
        "a46d6da2f5e3f65d"


# --- the stratified draw on multi-label sets ---------------------------------------------------

def multi_label_pool(n: int, n_classes: int, seed: int = 0,
                     unlabelled: float = 0.05) -> LabelSet:
    """``n`` images with 1 to 3 random labels each (``unlabelled`` of them none)."""
    rng = np.random.default_rng(seed)
    hot = np.zeros((n, n_classes), dtype=bool)
    for i, count in enumerate(rng.integers(1, 4, n)):
        hot[i, rng.choice(n_classes, count, replace=False)] = True
    hot[rng.random(n) < unlabelled] = False
    return LabelSet.from_multi_hot(hot)


def test_per_class_draw_takes_each_class_its_quota_of_new_images() -> None:
    labels = multi_label_pool(600, 6)
    pool = np.arange(600)
    for seed in range(5):
        drawn = strata.stratified_draw(pool, labels, strata.per_class(labels, pool, 10),
                                       np.random.default_rng(seed))
        assert len(drawn) == 60 and np.all(np.diff(drawn) > 0)
        assert labels.labelled[drawn].all()
        assert (labels.multi_hot[drawn].sum(axis=0) >= 10).all()  # every class, 10 at least


def test_draw_hand_case_and_top_up() -> None:
    # images 0, 1 bear classes 0 and 1, image 2 class 1 only, image 3 none
    labels = LabelSet.from_lists([[0, 1], [0, 1], [1], []], 2)
    pool = np.arange(4)
    for seed in range(8):
        drawn = strata.stratified_draw(pool, labels, np.array([1, 1]),
                                       np.random.default_rng(seed))
        # class 0 takes image 0 or 1; class 1 one of the two images left that bear it
        assert len(drawn) == 2 and 3 not in drawn and ({0, 1} & set(drawn.tolist()))
    # class 0 takes both of its images; class 1 then has image 2 left only, and the
    # quotas' total (4) cannot be met: all three labelled images, never the unlabelled one
    drawn = strata.stratified_draw(pool, labels, np.array([2, 2]), np.random.default_rng(0))
    assert drawn.tolist() == [0, 1, 2]


def test_top_up_keeps_the_draw_at_the_quotas_total() -> None:
    # class 1's only images are those of class 0: class 0 takes them (quota 2 of 3), class 1
    # finds 1 left for a quota of 2, and the draw is topped up from class 2's images
    labels = LabelSet.from_lists([[0, 1], [0, 1], [0, 1], [2], [2], [2]], 3)
    for seed in range(6):
        drawn = strata.stratified_draw(np.arange(6), labels, np.array([2, 2, 1]),
                                       np.random.default_rng(seed))
        assert len(drawn) == 5 and set(drawn.tolist()) >= {0, 1, 2}


def test_fraction_quotas_count_each_image_once() -> None:
    labels = multi_label_pool(2000, 8, seed=1, unlabelled=0.0)
    pool = np.arange(2000)
    quotas = strata.fraction(labels, pool, 0.1)
    assert abs(quotas.sum() - 200) <= 8  # one rounding per class
    shares = strata.class_shares(labels, pool)
    assert shares.sum() == pytest.approx(2000)
    single = LabelSet.from_ids(np.repeat(np.arange(3), [5, 15, 25]))
    assert strata.fraction(single, np.arange(45), 0.1).tolist() == [1, 2, 2]  # round half even


@pytest.mark.parametrize("n", [8, 100, 997])
def test_total_quotas_apportion_exactly(n: int) -> None:
    labels = multi_label_pool(3000, 8, seed=2)
    pool = np.arange(3000)
    quotas = strata.total(labels, pool, n)
    assert quotas.sum() == n and (quotas >= 1).all()
    shares = strata.class_shares(labels, pool)
    assert np.abs(quotas - n * shares / shares.sum()).max() < 1.5
    with pytest.raises(DataError, match="cannot draw 7 images covering 8 classes"):
        strata.total(labels, pool, 7)


# --- holdout and auto ------------------------------------------------------------------------

def check_splits(s: Splits, labels: LabelSet) -> None:
    """What every protocol guarantees: sorted distinct indices, train/val/query labelled and
    disjoint from each other, queries outside the database."""
    for name in ("train", "val", "query", "database"):
        array = getattr(s, name)
        assert array.dtype == np.int64 and np.all(np.diff(array) > 0), name
    for a, b in (("train", "val"), ("query", "train"), ("query", "val"), ("query", "database")):
        assert not np.intersect1d(getattr(s, a), getattr(s, b)).size, (a, b)
    for name in ("train", "val", "query"):
        assert labels.labelled[getattr(s, name)].all(), name
    training = np.union1d(s.train, s.val)
    present = labels.multi_hot[training].any(axis=0)
    assert (labels.multi_hot[s.val].any(axis=0) == present).all()  # val covers every class


def test_holdout_on_a_class_folder_of_1000_images() -> None:
    labels = np.repeat(np.arange(10), 100)
    s = make_splits("holdout", labels, np.zeros(1000, bool), seed=0)
    assert s.sizes() == {"train": 810, "val": 90, "query": 100, "database": 900}
    assert per_class(labels, s.query) == [10] * 10 and per_class(labels, s.val) == [9] * 10
    assert np.array_equal(np.union1d(s.query, s.database), np.arange(1000))
    assert np.array_equal(np.union1d(s.train, s.val), s.database)
    check_splits(s, LabelSet.from_ids(labels))
    assert s.headline is None and s.held_out == ()


def test_holdout_on_multi_label_data_keeps_unlabelled_images_in_the_database() -> None:
    labels = multi_label_pool(1500, 7, seed=3)
    s = make_splits("holdout", labels, np.zeros(1500, bool), seed=1)
    check_splits(s, labels)
    assert labels.multi_hot[s.query].any(axis=0).all()  # every class among the queries
    assert np.array_equal(np.union1d(s.query, s.database), np.arange(1500))
    unlabelled = np.flatnonzero(~labels.labelled)
    assert unlabelled.size and np.isin(unlabelled, s.database).all()
    assert 0.08 < len(s.query) / labels.labelled.sum() < 0.12
    again = make_splits("holdout", labels, np.zeros(1500, bool), seed=1)
    assert _digest(again) == _digest(s)
    assert _digest(make_splits("holdout", labels, np.zeros(1500, bool), seed=2)) != _digest(s)


def test_holdout_refuses_classes_too_small() -> None:
    with pytest.raises(DataError, match=r"^class 'b' has 2 image\(s\); protocol 'holdout' needs "
                                        r"at least 3 per class \(a query, a validation and a "
                                        r"training image\); add images to the class or leave "
                                        r"it out$"):
        make_splits("holdout", np.array([0, 0, 0, 1, 1]), np.zeros(5, bool), 0,
                    classes=["a", "b"])


def test_auto_picks_lists_then_cifar10_then_holdout() -> None:
    labels, is_test = cifar_like_pool()
    parts = {"train": np.arange(0, 60000, 12), "query": np.arange(1, 60000, 60),
             "database": np.arange(2, 60000, 3)}
    assert make_splits("auto", labels, is_test, 0, parts=parts).protocol == "lists"
    assert make_splits("auto", labels, is_test, 0).protocol == "cifar10"
    assert make_splits("auto", labels, np.zeros(60000, bool), 0).protocol == "holdout"


def test_cifar10_refuses_data_without_a_test_part_naming_what_works() -> None:
    labels = np.repeat(np.arange(3), 10)
    with pytest.raises(DataError, match=r"^protocol 'cifar10' takes the data's official test "
                                        r"part as queries and this data has none; use "
                                        r"--protocol holdout .* or auto$"):
        make_splits("cifar10", labels, np.zeros(30, bool), 0)
    parts = {"train": np.arange(10), "query": np.arange(10, 20), "database": np.arange(20, 30)}
    with pytest.raises(DataError, match="use --protocol lists"):
        make_splits("cifar10", labels, np.zeros(30, bool), 0, parts=parts)


def test_cifar10_and_dtsh1_on_multi_label_data() -> None:
    labels = multi_label_pool(3000, 5, seed=4)
    is_test = np.arange(3000) % 6 == 0
    s = make_splits("cifar10", labels, is_test, seed=0)
    check_splits(s, labels)
    assert np.array_equal(s.query, np.flatnonzero(is_test & labels.labelled))
    assert np.array_equal(s.database, np.flatnonzero(~is_test))  # unlabelled ones too
    d = dtsh_setting1(labels, is_test, 0, queries_per_class=20, train_per_class=100)
    check_splits(d, labels)
    assert len(d.query) == 100 and len(d.train) + len(d.val) == 500
    assert np.isin(np.union1d(d.train, d.val), d.database).all()


# --- unseen:N --------------------------------------------------------------------------------

def test_unseen_holds_classes_out_of_training() -> None:
    labels, is_test = cifar_like_pool()
    s = make_splits("unseen:2", labels, is_test, seed=0)
    assert s.protocol == "unseen:2" and len(s.held_out) == 2
    held = np.isin(labels, s.held_out)
    assert not held[s.train].any() and not held[s.val].any()
    assert held[s.query].all() and held[s.database].all()
    assert np.array_equal(s.query, np.flatnonzero(held & is_test))  # their test part: 2,000
    assert np.array_equal(s.database, np.flatnonzero(held & ~is_test))  # 10,000
    assert s.sizes() == {"train": 36000, "val": 4000, "query": 2000, "database": 10000}
    assert not is_test[s.train].any()
    chosen = {make_splits("unseen:2", labels, is_test, seed=k).held_out for k in range(6)}
    assert len(chosen) > 1  # seeded: another seed holds other classes out
    assert make_splits("unseen:2", labels, is_test, seed=0).held_out == s.held_out


def test_unseen_without_a_test_part_draws_10_percent_queries() -> None:
    labels = np.repeat(np.arange(6), 50)
    s = make_splits("unseen:3", labels, np.zeros(300, bool), seed=4)
    check_splits(s, LabelSet.from_ids(labels))
    assert per_class(labels, s.query)[:6] == [5 if c in s.held_out else 0 for c in range(6)]
    assert np.array_equal(np.union1d(s.query, s.database),
                          np.flatnonzero(np.isin(labels, s.held_out)))
    assert np.array_equal(np.union1d(s.train, s.val),
                          np.flatnonzero(~np.isin(labels, s.held_out)))


@pytest.mark.parametrize("name, message", [
    ("unseen:9", r"^protocol 'unseen:9' holds out more classes than the data's 10 allow \(at "
                 r"least two are left to train on\); use unseen:N with N from 1 to 8$"),
    ("unseen:3", r"^protocol 'unseen:3' holds out more classes"),
])
def test_unseen_checks_n_against_the_classes(name: str, message: str) -> None:
    labels = np.repeat(np.arange(10), 5) if name == "unseen:9" else np.repeat(np.arange(4), 5)
    with pytest.raises(DataError, match=message):
        make_splits(name, labels, np.zeros(len(labels), bool), 0)
    with pytest.raises(DataError, match=r"needs at least 3 classes .*use --protocol holdout$"):
        make_splits("unseen:1", np.repeat(np.arange(2), 5), np.zeros(10, bool), 0)
    with pytest.raises(DataError, match=r"needs one label per image; .*use --protocol lists "
                                        r"or holdout$"):
        make_splits("unseen:1", multi_label_pool(100, 5), np.zeros(100, bool), 0)


@pytest.mark.parametrize("name, parsed", [
    ("cifar10", ("cifar10", None)), ("holdout", ("holdout", None)),
    ("unseen:2", ("unseen:<N>", 2)), ("unseen:10", ("unseen:<N>", 10))])
def test_protocol_names_parse(name: str, parsed: tuple[str, int | None]) -> None:
    assert parse_protocol(name) == parsed
    check_protocol(name)
    check_protocol("auto")


@pytest.mark.parametrize("name, message", [
    ("unseen:0", "protocol 'unseen:0': N must be a whole number of held-out classes, at least 1"),
    ("unseen:x", "protocol 'unseen:x': N must be"), ("unseen:", "protocol 'unseen:': N must"),
    ("unseen:<N>", "N must be"), ("unseen:99999999999", "N must be"),
    ("unseen", "unknown protocol 'unseen'; known: auto, cifar10"),
    ("nope:2", "unknown protocol 'nope:2'"), ("auto:2", "unknown protocol"),
])
def test_bad_protocol_names_are_refused_in_one_line(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_protocol(name)
    assert "\n" not in str(info.value)


def test_headline_and_held_out_round_trip_and_stay_out_of_older_protocols_files(
        tmp_path: Path) -> None:
    labels, is_test = cifar_like_pool()
    s = make_splits("unseen:3", labels, is_test, seed=1)
    s.to_json(tmp_path / "u.json")
    back = Splits.from_json(tmp_path / "u.json")
    assert back.held_out == s.held_out and back.protocol == "unseen:3"
    make_splits("cifar10", labels, is_test, seed=1).to_json(tmp_path / "c.json")
    assert list(json.loads((tmp_path / "c.json").read_text())) == [
        "protocol", "seed", "sizes", "train", "val", "query", "database"]
    headline = dataclasses.replace(s, headline="map@5000", held_out=())
    headline.to_json(tmp_path / "h.json")
    assert Splits.from_json(tmp_path / "h.json").map_cutoff == 5000


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("name", [n.replace("<N>", "1") for n in PROTOCOLS.names()] + ["auto"])
def test_every_protocol_is_seeded_and_keeps_its_splits_apart(name: str, multi: bool) -> None:
    """Every registered protocol, on single- and multi-label data that has a test part and
    its own parts (the protocols that do not read them ignore them)."""
    pool = np.arange(2800)
    labels = multi_label_pool(2800, 4, seed=11) if multi else LabelSet.from_ids(pool // 700)
    is_test = pool % 7 == 0
    parts = {"query": pool[::10], "train": pool[1::10], "database": np.setdiff1d(pool, pool[::10])}
    if multi and name.startswith("unseen"):
        with pytest.raises(DataError, match="needs one label per image"):
            make_splits(name, labels, is_test, 7, parts=parts)
        return
    a, b = (make_splits(name, labels, is_test, 7, parts=parts) for _ in range(2))
    check_splits(a, labels)
    assert _digest(a) == _digest(b)
    assert _digest(make_splits(name, labels, is_test, 8, parts=parts)) != _digest(a)
    assert a.protocol == ("lists" if name == "auto" else name)
