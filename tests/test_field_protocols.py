"""The data's own parts (``lists``) and the field's named protocols: their sizes, what they
take from the parts, the size warning, the refusals, and the headline cut-off reaching
``metrics.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deephash.data import make_splits
from deephash.data.protocols.field import FIELD_PROTOCOLS
from deephash.errors import DataError
from deephash.labels import LabelSet
from deephash.pipeline.config import EvalConfig
from deephash.pipeline.protocol import protocol_evaluation
from deephash.pipeline.results import write_results
from tests.test_protocols import check_splits, cifar_like_pool, multi_label_pool, per_class

FIELD_LOG = "deephash.data.protocols.field"


def own_parts(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint query (10 %) and train (30 %) parts; the database every non-query image
    (the training images in it, as in DeepHash-pytorch's NUS-WIDE lists)."""
    order = np.random.default_rng(seed).permutation(n)
    query, train = np.sort(order[: n // 10]), np.sort(order[n // 10: n // 10 + 3 * n // 10])
    return {"query": query, "train": train, "database": np.setdiff1d(np.arange(n), query)}


# --- lists ----------------------------------------------------------------------------------

@pytest.mark.parametrize("multi", [False, True])
def test_lists_takes_the_data_s_parts(multi: bool) -> None:
    labels = (multi_label_pool(2000, 6, seed=5, unlabelled=0.0) if multi
              else LabelSet.from_ids(np.arange(2000) % 6))
    parts = own_parts(2000)
    s = make_splits("lists", labels, np.zeros(2000, bool), seed=0, parts=parts)
    check_splits(s, labels)
    assert np.array_equal(s.query, parts["query"])
    assert np.array_equal(s.database, parts["database"])
    assert np.array_equal(np.union1d(s.train, s.val), parts["train"])
    assert 0.08 < len(s.val) / len(parts["train"]) < 0.12
    assert s.protocol == "lists" and s.headline is None
    again = make_splits("lists", labels, np.zeros(2000, bool), seed=0, parts=parts)
    assert np.array_equal(again.val, s.val)
    other = make_splits("lists", labels, np.zeros(2000, bool), seed=1, parts=parts)
    assert not np.array_equal(other.val, s.val) and np.array_equal(other.query, s.query)


def test_lists_refuses_data_without_parts_in_one_line() -> None:
    with pytest.raises(DataError, match=r"^protocol 'lists' uses the data's own "
                                        r"train/query/database parts \(list files, a CSV split "
                                        r"column\) and this data has none; use --protocol auto "
                                        r"\(or holdout, cifar10\)$"):
        make_splits("lists", np.arange(30) % 3, np.zeros(30, bool), 0)
    with pytest.raises(DataError, match=r"^protocol 'lists': the data's parts lack database; "):
        make_splits("lists", np.arange(30) % 3, np.zeros(30, bool), 0,
                    parts={"train": np.arange(10), "query": np.arange(10, 20)})
    with pytest.raises(DataError, match="the query part names image 30 of 30"):
        make_splits("lists", np.arange(30) % 3, np.zeros(30, bool), 0,
                    parts={"train": np.arange(10), "query": np.arange(25, 31),
                           "database": np.arange(10, 25)})


def test_lists_leaves_unlabelled_queries_and_training_images_out(
        caplog: pytest.LogCaptureFixture) -> None:
    labels = LabelSet.from_ids(np.where(np.arange(300) % 50 == 0, -1, np.arange(300) % 3))
    parts = own_parts(300, seed=2)
    with caplog.at_level(logging.WARNING, logger=FIELD_LOG):
        s = make_splits("lists", labels, np.zeros(300, bool), 0, parts=parts)
    check_splits(s, labels)
    unlabelled = np.flatnonzero(~labels.labelled)
    assert np.array_equal(s.query, np.setdiff1d(parts["query"], unlabelled))
    assert np.array_equal(s.database, parts["database"])  # unlabelled ones stay there
    assert len(caplog.records) == 1 and "unlabelled image(s)" in caplog.records[0].message


# --- the field's protocols, drawn ---------------------------------------------------------------

def test_nus_wide_21_drawn_on_multi_label_data(caplog: pytest.LogCaptureFixture) -> None:
    labels = multi_label_pool(14000, 21, seed=6)
    with caplog.at_level(logging.WARNING, logger=FIELD_LOG):
        s = make_splits("nus-wide-21", labels, np.zeros(14000, bool), seed=0)
    check_splits(s, labels)
    assert len(s.query) == 2100 and len(s.train) + len(s.val) == 10500
    assert np.array_equal(s.database, np.setdiff1d(np.arange(14000), s.query))
    assert np.isin(np.union1d(s.train, s.val), s.database).all()  # the field's training set
    assert (labels.multi_hot[s.query].sum(axis=0) >= 100).all()
    assert s.headline == "map@5000" and s.map_cutoff == 5000
    [record] = caplog.records  # the database is not the field's 193,734: one line says so
    assert "database 11,900 (the field: 193,734)" in record.message
    assert "query 2,100 (the field: 2,100)" in record.message


def test_cifar10_54k_is_deephash_pytorch_s_cifar10(caplog: pytest.LogCaptureFixture) -> None:
    labels, is_test = cifar_like_pool()
    with caplog.at_level(logging.WARNING, logger=FIELD_LOG):
        s = make_splits("cifar10-54k", labels, is_test, seed=0)
    assert s.sizes() == {"train": 4500, "val": 500, "query": 1000, "database": 54000}
    assert per_class(labels, s.query) == [100] * 10
    assert per_class(labels, np.union1d(s.train, s.val)) == [500] * 10
    assert not np.intersect1d(s.database, np.union1d(s.train, s.val)).size
    assert np.array_equal(np.union1d(np.union1d(s.query, s.database),
                                     np.union1d(s.train, s.val)), np.arange(60000))
    assert s.headline == "map@all" and s.map_cutoff is None
    assert not caplog.records  # the field's sizes exactly
    # dtsh-1 is the same draw with the training images left in the database
    d = make_splits("dtsh-1", labels, is_test, seed=0)
    assert np.array_equal(d.query, s.query) and np.array_equal(d.val, s.val)


def test_coco_draws_totals_covering_every_class() -> None:
    labels = multi_label_pool(16000, 80, seed=7)
    s = make_splits("coco", labels, np.zeros(16000, bool), seed=3)
    check_splits(s, labels)
    assert len(s.query) == 5000 and len(s.train) + len(s.val) == 10000
    assert len(s.database) == 11000
    assert labels.multi_hot[s.query].any(axis=0).all()
    assert labels.multi_hot[np.union1d(s.train, s.val)].any(axis=0).all()


def test_imagenet_100_queries_the_test_part() -> None:
    train_part, test_part = np.repeat(np.arange(100), 140), np.repeat(np.arange(100), 50)
    labels = np.concatenate([train_part, test_part])
    is_test = np.r_[np.zeros(14000, bool), np.ones(5000, bool)]
    s = make_splits("imagenet-100", labels, is_test, seed=0)
    assert np.array_equal(s.query, np.arange(14000, 19000))
    assert np.array_equal(s.database, np.arange(14000))
    assert np.bincount(labels[np.union1d(s.train, s.val)]).tolist() == [130] * 100
    assert s.headline == "map@1000"
    without = make_splits("imagenet-100", labels, np.zeros(19000, bool), seed=0)
    assert np.bincount(labels[without.query]).tolist() == [50] * 100


def test_field_protocols_refuse_data_too_small_naming_holdout() -> None:
    labels, is_test = np.repeat(np.arange(21), 300), np.zeros(6300, bool)
    with pytest.raises(DataError, match=r"^class '0' has 300 image\(s\); protocol 'nus-wide-21' "
                                        r"needs at least 600 per class \(100 queries \+ 500 "
                                        r"training\); use --protocol holdout"):
        make_splits("nus-wide-21", labels, is_test, 0)
    with pytest.raises(DataError, match=r"^protocol 'coco' needs 15,000 labelled images "
                                        r"\(5,000 queries \+ 10,000 training\); the data has "
                                        r"6,300: use --protocol holdout"):
        make_splits("coco", labels, is_test, 0)


# --- the field's protocols on the data's parts ----------------------------------------------------

@pytest.mark.parametrize("name", sorted(FIELD_PROTOCOLS))
def test_field_protocols_take_the_parts_and_warn_of_other_sizes(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    labels = multi_label_pool(3000, 12, seed=8, unlabelled=0.0)
    parts = own_parts(3000, seed=1)
    with caplog.at_level(logging.WARNING, logger=FIELD_LOG):
        s = make_splits(name, labels, np.zeros(3000, bool), seed=0, parts=parts)
    lists = make_splits("lists", labels, np.zeros(3000, bool), seed=0, parts=parts)
    for split in ("train", "val", "query", "database"):
        assert np.array_equal(getattr(s, split), getattr(lists, split))
    assert s.protocol == name and s.headline == FIELD_PROTOCOLS[name].headline
    [record] = caplog.records
    assert record.message.startswith(f"protocol {name} on 12 classes: query 300 (the field: ")
    assert "\n" not in record.message


def test_parts_at_the_field_s_sizes_give_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    labels, is_test = cifar_like_pool()
    drawn = make_splits("cifar10-54k", labels, is_test, seed=0)
    parts = {"query": drawn.query, "train": np.union1d(drawn.train, drawn.val),
             "database": drawn.database}
    with caplog.at_level(logging.WARNING, logger=FIELD_LOG):
        s = make_splits("cifar10-54k", labels, is_test, seed=0, parts=parts)
    assert not caplog.records
    assert np.array_equal(s.query, drawn.query) and np.array_equal(s.database, drawn.database)
    assert np.array_equal(np.union1d(s.train, s.val), parts["train"])


# --- the headline cut-off reaches the evaluation ----------------------------------------------

def test_protocol_evaluation_adds_the_headline_cut_off_once() -> None:
    labels = multi_label_pool(14000, 21, seed=6)
    field = make_splits("nus-wide-21", labels, np.zeros(14000, bool), seed=0)
    cfg = EvalConfig()
    assert protocol_evaluation(cfg, field).map_cutoffs == (1000, 5000)
    asked = EvalConfig(map_cutoffs=(5000,))
    assert protocol_evaluation(asked, field) is asked
    labels_1, is_test = cifar_like_pool()
    for name in ("cifar10", "dtsh-1", "cifar10-54k", "holdout", "unseen:2"):
        assert protocol_evaluation(cfg, make_splits(name, labels_1, is_test, 0)) is cfg


@pytest.mark.parametrize("protocol, headline", [("nus-wide-21", "map@5000"),
                                                ("lists", None)])
def test_metrics_json_holds_the_protocol_s_headline(protocol: str, headline: str | None,
                                                    tmp_path: Path) -> None:
    labels = multi_label_pool(400, 21, seed=10, unlabelled=0.0)
    parts = own_parts(400, seed=3)
    splits = make_splits(protocol, labels, np.zeros(400, bool), 0, parts=parts)
    dataset = SimpleNamespace(labels=labels, classes=[f"c{i}" for i in range(21)])
    features = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    metrics = write_results(tmp_path, features, dataset, splits,  # type: ignore[arg-type]
                            EvalConfig(tsne_points=0), seed=0, title="t")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert "map@1000" in written and ("map@5000" in written) == (headline is not None)


# --- end to end ---------------------------------------------------------------------------------

def test_baseline_runs_unseen_classes_end_to_end(folder: Path, tmp_path: Path) -> None:
    """``--protocol unseen:1`` passes the configuration's checks, and the run's files say
    which class was held out; its queries and database are that class's images only."""
    from deephash.cli import main

    run = tmp_path / "run"
    assert main(["baseline", "--data-dir", str(folder), "--out", str(run), "--cache-dir",
                 str(tmp_path / "cache"), "--image-size", "32", "--num-workers", "0",
                 "--tsne-points", "0", "--protocol", "unseen:1", "--device", "cpu"]) == 0
    saved = json.loads((run / "splits.json").read_text())
    [held] = saved["held_out"]
    assert saved["protocol"] == "unseen:1" and saved["held_out_classes"] == [f"class{held}"]
    assert saved["sizes"] == {"train": 22, "val": 2, "query": 4, "database": 12}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"] == "unseen:1" and metrics["n_query"] == 4
    query = np.load(run / "embeddings" / "query.npz")
    assert (query["y"] == held).all()
    assert 0.0 <= metrics["map@all"] <= 1.0


@pytest.mark.parametrize("command", ["baseline", "train", "hash"])
def test_unseen_n_passes_the_configuration_checks(command: str, image_folder: Path,
                                                  tmp_path: Path) -> None:
    from deephash.cli import build_config, build_parser

    args = build_parser().parse_args([command, "--protocol", "unseen:2", "--data-dir",
                                      str(image_folder), "--out", str(tmp_path / "out")])
    assert build_config(command, args).data.protocol == "unseen:2"


def test_the_auto_default_runs_what_cifar10_ran(folder: Path, tmp_path: Path) -> None:
    """The default changed from cifar10 to auto: on data with a test part a run's
    splits.json and metrics.json are byte for byte those of --protocol cifar10."""
    from deephash.cli import main

    common = ["--data-dir", str(folder), "--cache-dir", str(tmp_path / "cache"),
              "--image-size", "32", "--num-workers", "0", "--tsne-points", "0",
              "--device", "cpu"]
    runs = {name: tmp_path / name for name in ("auto", "cifar10")}
    assert main(["baseline", *common, "--out", str(runs["auto"])]) == 0
    assert main(["baseline", *common, "--out", str(runs["cifar10"]), "--protocol",
                 "cifar10"]) == 0
    for name in ("splits.json", "metrics.json"):
        assert (runs["auto"] / name).read_bytes() == (runs["cifar10"] / name).read_bytes()
