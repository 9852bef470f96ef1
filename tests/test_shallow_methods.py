"""The shallow baselines ITQ and LSH (:mod:`deephash.hashing.shallow`): against the paper's
algorithm written out, their defining properties, and ``hash --method itq|lsh`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, tiny_run_args

from deephash.cli import main
from deephash.config import load_yaml
from deephash.data import open_dataset
from deephash.errors import ConfigError
from deephash.hashing.shallow import ITQ, LSH, shallow_coder
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.pipeline.features import load_features
from deephash.training.checkpoint import load_model
from deephash.training.config import TrainConfig


def itq_by_the_paper(x: np.ndarray, bits: int, seed: int, iterations: int = 50
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Gong & Lazebnik's ITQ (CVPR 2011, Algorithm and their ITQ.m), transcribed: centre,
    PCA to ``bits`` dimensions (here by an SVD of the data, each direction signed so that
    its largest-magnitude entry is positive), a random orthogonal R, then 50 times
    ``B = sign(V R)`` and ``[UB, S, UA] = svd(Bᵀ V); R = UA UBᵀ``. Returns the training
    codes ``(N, bits)`` in {-1, +1} and R."""
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    pc = vt[:bits].T
    pc = pc * np.sign(pc[np.abs(pc).argmax(axis=0), np.arange(bits)])
    v = x @ pc
    r = np.linalg.svd(np.random.default_rng(seed).standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        z = v @ r
        ux = np.ones_like(z)
        ux[z < 0] = -1
        ub, _sigma, ua_t = np.linalg.svd(ux.T @ v)  # MATLAB: [UB, sigma, UA] = svd(C)
        r = ua_t.T @ ub.T  # R = UA * UB'
    z = v @ r
    return np.where(z >= 0, 1, -1), r


def clustered(n: int, dim: int, classes: int, seed: int,
              spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` non-negative, ReLU-like features around one centre per class, and the
    ``(n,)`` class ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)) * 2
    return np.maximum(centres[labels] + spread * rng.normal(size=(n, dim)), 0), labels


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_itq_gives_the_codes_of_the_papers_algorithm(seed: int) -> None:
    x, _ = clustered(240, 20, 5, seed)
    coder = ITQ(8, seed=seed).fit(x)
    expected_codes, expected_rotation = itq_by_the_paper(x, 8, seed)
    np.testing.assert_array_equal(coder.encode(x), expected_codes)
    np.testing.assert_allclose(coder.rotation_, expected_rotation, atol=1e-8)
    assert coder.encode(x).dtype == np.int8 and coder.transform(x).shape == (240, 8)
    # another seed starts from another rotation and ends elsewhere
    assert not np.allclose(ITQ(8, seed=seed + 100).fit(x).rotation_, coder.rotation_)


def test_itq_quantisation_loss_never_rises_and_its_rotation_is_orthogonal() -> None:
    x, _ = clustered(500, 32, 8, seed=3)
    coder = ITQ(16, seed=0).fit(x)
    losses = coder.quantization_loss_
    assert losses.shape == (51,)
    assert (np.diff(losses) <= 1e-9 * losses[0]).all()
    assert losses[-1] < 0.95 * losses[0]  # it learns something
    centred = x - x.mean(axis=0)
    v_r = centred @ coder.projection_
    codes = np.where(v_r >= 0, 1, -1)
    assert ((codes - v_r) ** 2).sum() == pytest.approx(losses[-1])
    r = coder.rotation_
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-10)
    # the projection W R has orthonormal columns: PCA directions, rotated
    p = coder.projection_
    np.testing.assert_allclose(p.T @ p, np.eye(16), atol=1e-10)
    # zero iterations: the random rotation itself, the first loss
    assert ITQ(16, seed=0, iterations=0).fit(x).quantization_loss_.tolist() == [losses[0]]


@pytest.mark.parametrize("angle", [np.pi / 6, np.pi / 3, np.pi / 2, 2 * np.pi / 3, 0.9 * np.pi])
def test_lsh_bits_collide_with_probability_one_minus_angle_over_pi(angle: float) -> None:
    """Charikar's property: for a random hyperplane through the origin, two vectors at
    angle θ fall on the same side with probability 1 - θ/π."""
    dim, bits = 12, 20000
    rng = np.random.default_rng(5)
    a = rng.normal(size=dim)
    a /= np.linalg.norm(a)
    other = rng.normal(size=dim)
    other -= (other @ a) * a
    other /= np.linalg.norm(other)
    b = np.cos(angle) * a + np.sin(angle) * other  # at `angle` to a
    pair = np.stack([a, b])
    codes = LSH(bits, seed=11, centre=False).fit(pair).encode(pair)
    agree = float((codes[0] == codes[1]).mean())
    p = 1 - angle / np.pi
    assert abs(agree - p) < 5 * np.sqrt(p * (1 - p) / bits)


def test_lsh_centres_on_the_training_mean_by_default() -> None:
    x, _ = clustered(300, 10, 3, seed=2)
    centred = LSH(6, seed=4).fit(x)
    np.testing.assert_allclose(centred.mean_, x.mean(axis=0))
    np.testing.assert_allclose(centred.transform(x).mean(axis=0), 0, atol=1e-5)
    through_origin = LSH(6, seed=4, centre=False).fit(x)
    np.testing.assert_array_equal(through_origin.projection_, centred.projection_)  # seeded
    np.testing.assert_allclose(through_origin.transform(x), x @ centred.projection_, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_itq_retrieves_better_than_lsh_on_clustered_data(seed: int) -> None:
    x, labels = clustered(1200, 64, 10, seed)
    train, query, database = np.arange(600), np.arange(600, 700), np.arange(700, 1200)
    scores = {}
    for coder in (ITQ(16, seed=seed), LSH(16, seed=seed)):
        codes = coder.fit(x[train]).transform(x)
        packed = np.packbits(codes >= 0, axis=1)
        scores[coder.name] = evaluate_codes(packed[query], packed[database], labels[query],
                                            labels[database], 16).metrics["map@all"]
    assert scores["itq"] >= scores["lsh"]


def test_bad_code_lengths_are_refused_in_one_line() -> None:
    x = np.random.default_rng(0).normal(size=(30, 8))
    with pytest.raises(ConfigError, match=r"^itq: 9 bits exceed the 8 feature dimensions its "
                                          r"PCA can keep; give --bits 8 or fewer$"):
        ITQ(9).fit(x)
    with pytest.raises(ConfigError, match=r"^itq: 6 bits need at least 6 training images for "
                                          r"its PCA, the training split has 5; give --bits 5"):
        ITQ(6).fit(x[:5])
    assert ITQ(5).fit(x[:5]).encode(x).shape == (30, 5)
    assert LSH(64).fit(x).encode(x).shape == (30, 64)  # random projections may exceed D
    with pytest.raises(ValueError):
        ITQ(0)
    with pytest.raises(ValueError):
        LSH(4).fit(np.zeros((0, 8)))


def test_only_the_shallow_procedures_are_coders() -> None:
    assert shallow_coder("itq") is ITQ and shallow_coder("lsh") is LSH
    assert shallow_coder("triplet") is None and shallow_coder("zhuang") is None


@pytest.mark.parametrize("method", ["itq", "lsh"])
def test_hash_with_a_shallow_method_end_to_end(method: str, folder: Path,
                                               tmp_path: Path) -> None:
    run = tmp_path / method
    args = tiny_run_args(folder, tmp_path / "c")
    assert main(["hash", "--method", method, "--out", str(run), "--bits", "8", "16",
                 *args]) == 0
    assert [r["bits"] for r in json.loads((run / "bits.json").read_text())] == [8, 16]
    for bits in (8, 16):
        sub = run / f"bits-{bits}"
        config = load_yaml(TrainConfig, sub / "config.yaml")
        assert config.training.procedure == method and config.training.codes
        metrics = json.loads((sub / "metrics.json").read_text())
        assert metrics["distance"] == "hamming" and metrics["bits"] == bits
        assert 0 <= metrics["map@all"] <= 1 and 0 <= metrics["map@all_index_order"] <= 1
        assert "code_distinct" in metrics and "val_map@all" in metrics
        assert "frozen_val_map@all" in metrics and "best_epoch" not in metrics
        assert json.loads((sub / "run.json").read_text())["seconds"]["train"] >= 0
        # the codes are the coder's, fitted on the frozen training features alone
        splits = json.loads((sub / "splits.json").read_text())
        dataset = open_dataset(str(folder))
        features = load_features(config, dataset, torch.device("cpu"))
        x = features["identity"]
        coder = (ITQ if method == "itq" else LSH)(bits, seed=config.seed)
        expected = coder.fit(x[np.array(splits["train"])]).encode(x)
        for part in ("query", "database"):
            saved = np.load(sub / "codes" / f"{part}.npz")
            ones = np.unpackbits(saved["codes"], axis=1, count=bits).astype(bool)
            np.testing.assert_array_equal(ones, expected[saved["index"]] > 0)
            np.testing.assert_array_equal(saved["index"], splits[part])
        again = evaluate_codes(np.load(sub / "codes" / "query.npz")["codes"],
                               np.load(sub / "codes" / "database.npz")["codes"],
                               np.load(sub / "codes" / "query.npz")["y"],
                               np.load(sub / "codes" / "database.npz")["y"], bits)
        assert again.metrics["map@all"] == pytest.approx(metrics["map@all"])


@pytest.mark.parametrize("method", ["itq", "lsh"])
def test_a_shallow_run_indexes_and_searches_like_a_trained_one(
        method: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """best.pt holds the fitted coder as a linear head: its outputs are the coder's relaxed
    codes, so index, search and serve take the run as they take a trained one."""
    run, cache = tmp_path / method, tmp_path / "c"
    assert main(["hash", "--method", method, "--out", str(run), "--bits", "16",
                 *tiny_run_args(folder, cache)]) == 0
    sub = run / "bits-16"
    config, model = load_model(sub / "best.pt")
    assert config.training.procedure == method and config.training.hidden_dims == ()
    features = load_features(config, open_dataset(str(folder)), torch.device("cpu"))
    x = features["identity"]
    splits = json.loads((sub / "splits.json").read_text())
    coder = (ITQ if method == "itq" else LSH)(16, seed=config.seed)
    relaxed = coder.fit(x[np.array(splits["train"])]).transform(x)
    with torch.no_grad():
        outputs = model(torch.from_numpy(np.array(x, dtype=np.float32))).numpy()
    np.testing.assert_allclose(outputs, relaxed, rtol=1e-4, atol=1e-4)
    saved = np.load(sub / "codes" / "database.npz")
    ones = np.unpackbits(saved["codes"], axis=1, count=16).astype(bool)
    agree = (outputs[saved["index"]] >= 0) == ones
    assert agree.mean() > 0.999  # float32 against float64: a bit at ~0 may flip, no more
    index = tmp_path / "index"
    assert main(["index", "--checkpoint", str(sub / "best.pt"), "--data-dir", str(folder),
                 "--out", str(index), "--cache-dir", str(cache)]) == 0
    assert json.loads((index / "index.json").read_text())["codes"] is True
    capsys.readouterr()
    query = folder / "test" / "class1" / "02.png"
    assert main(["search", str(query), "--index", str(index), "-k", "5"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]
            if not line.startswith("#")]
    assert len(rows) == 5 and float(rows[0][1]) == 0  # the query's own code, distance 0


def test_hash_refuses_more_itq_bits_than_training_images_before_any_folder(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The feature dimension is checked with the options (tests/test_bad_input.py); the
    training split's size once the protocol has split the data, before any extraction and
    before the first code length's folder."""
    run, cache = tmp_path / "itq", tmp_path / "c"
    assert main(["hash", "--method", "itq", "--out", str(run), "--bits", "8", "100",
                 *tiny_run_args(folder, cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "deephash: error: itq: 100 bits need at least 100 training images for its PCA, the "
        "training split has ")
    assert not run.exists()
    assert {p.name for p in cache.iterdir()} == {"fingerprints"}  # no features extracted


def test_hash_with_itq_on_multi_label_list_files(tmp_path: Path) -> None:
    """ITQ reads no label, so multi-label data needs nothing of it; the evaluation scores
    relevance as a shared label (no kNN accuracy, which multi-label data does not define)."""
    root = make_image_folder(tmp_path / "images", n_classes=3, n_train=12, n_test=4)
    parts: dict[str, list[str]] = {"train": [], "test": []}
    for part in parts:
        for c in range(3):
            for image in sorted((root / part / f"class{c}").iterdir()):
                vector = [int(k == c or (k == (c + 1) % 3 and image.stem.endswith("1")))
                          for k in range(3)]  # some images carry a second label
                parts[part].append(f"{part}/class{c}/{image.name} {' '.join(map(str, vector))}")
    lists = tmp_path / "lists"
    lists.mkdir()
    for name, lines in (("train", parts["train"]), ("test", parts["test"]),
                        ("database", parts["train"])):
        (lists / f"{name}.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "itq"
    args = tiny_run_args(lists, tmp_path / "c")
    assert main(["hash", "--method", "itq", "--out", str(run), "--bits", "8",
                 "--image-root", str(root), *args]) == 0
    metrics = json.loads((run / "bits-8" / "metrics.json").read_text())
    assert metrics["protocol"] == "lists" and 0 <= metrics["map@all"] <= 1
    assert not any(key.startswith("knn_acc") for key in metrics)
    assert np.load(run / "bits-8" / "codes" / "query.npz")["y"].shape == (12, 3)  # multi-hot
