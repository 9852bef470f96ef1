"""``deephash.load(checkpoint)``: the vectors of images, as ``index`` and ``search`` compute
them, for paths, PIL images and arrays; refusals in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, tiny_run_args
from PIL import Image

import deephash
from deephash.cli import main
from deephash.errors import ConfigError, DataError
from deephash.inference import ImageEmbedder
from deephash.pipeline.config import BackboneConfig
from deephash.service.downscale import decode_query
from deephash.service.searcher import Searcher
from deephash.service.state import load_state
from deephash.training.checkpoint import save_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.model import build_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12-bit hashing model trained with the CLI on a tiny folder, and an untrained float
    model (8-d, test-time flip) on the same backbone, each indexed with the CLI:
    ``{"data", "hash", "hash-index", "float", "float-index"}``."""
    tree = tmp_path_factory.mktemp("inference")
    data = make_image_folder(tree / "data", n_classes=3, n_train=12, n_test=4)
    assert main(["hash", "--out", str(tree / "h"), "--bits", "12",
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    torch.manual_seed(0)
    config = TrainConfig(backbone=BackboneConfig(image_size=32), training=TrainingConfig(
        hidden_dims=(16,), embedding_dim=8, test_time_flip=True))
    save_checkpoint(tree / "float.pt", config, build_model(config.training, 1280, None))
    found = {"data": data, "hash": tree / "h" / "bits-12" / "best.pt", "float": tree / "float.pt"}
    for kind in ("hash", "float"):
        assert main(["index", "--checkpoint", str(found[kind]), "--data-dir", str(data),
                     "--out", str(tree / f"{kind}-index"), "--cache-dir", str(tree / "c")]) == 0
        found[f"{kind}-index"] = tree / f"{kind}-index"
    return found


@pytest.fixture(scope="module")
def models(runs: dict[str, Path]) -> dict[str, ImageEmbedder]:
    return {kind: deephash.load(runs[kind]) for kind in ("hash", "float")}


def indexed_images(index: Path) -> tuple[list[Path], np.ndarray, np.ndarray | None]:
    """The index's image files, in its rows' order, its stored vectors and (codes) its
    continuous outputs."""
    state = load_state(index)
    root = Path(state.info["data_root_absolute"])
    return [root / path for path in state.items.paths], state.vectors, state.outputs


def test_a_hashing_model_gives_the_codes_its_index_holds(
        runs: dict[str, Path], models: dict[str, ImageEmbedder]) -> None:
    model = models["hash"]
    assert model.codes and model.dim == 12 and "12-bit hashing" in repr(model)
    paths, stored, outputs = indexed_images(runs["hash-index"])
    assert outputs is not None
    embedded = model.embed(paths)
    assert embedded.shape == (len(paths), 12) and embedded.dtype == np.float32
    # the index's features come from its fastest runtime, ours from torch: equal to rounding
    np.testing.assert_allclose(embedded, outputs.astype(np.float32), atol=5e-3, rtol=5e-3)
    codes = model.hash(paths)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    assert np.array_equal(codes, np.where(embedded >= 0, 1, -1))
    clear = np.abs(embedded) > 1e-3  # a sign a rounding cannot flip
    stored_bits = np.unpackbits(stored, axis=1, count=12).astype(bool)
    assert np.array_equal((codes > 0)[clear], stored_bits[clear])
    assert clear.mean() > 0.95


def test_a_float_model_gives_the_embeddings_its_index_holds(
        runs: dict[str, Path], models: dict[str, ImageEmbedder]) -> None:
    model = models["float"]
    assert not model.codes and model.dim == 8
    paths, stored, outputs = indexed_images(runs["float-index"])
    assert outputs is None
    embedded = model.embed([str(path) for path in paths])  # str paths too
    assert embedded.shape == stored.shape == (len(paths), 8)
    if load_state(runs["float-index"]).index.metric == "cosine":  # it holds unit vectors
        embedded = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    np.testing.assert_allclose(embedded, stored, atol=1e-3, rtol=1e-3)
    with pytest.raises(ConfigError, match=r"float embedding model, not a hashing model; use "
                                          r"\.embed\(images\)$"):
        model.hash(paths[:1])


@pytest.mark.parametrize("kind", ["hash", "float"])
def test_paths_images_and_arrays_embed_as_search_embeds_its_query(
        runs: dict[str, Path], models: dict[str, ImageEmbedder], kind: str) -> None:
    """Exactly the search path's outputs (same decoder, transform and forward pass), for a
    path, the decoded PIL image (grayscale too), its array, and batches of them."""
    model = models[kind]
    files = sorted((runs["data"] / "test" / "class0").glob("*.png"))  # RGB, L, odd size, RGB
    searcher = Searcher.open(runs[f"{kind}-index"])
    decoded = [decode_query(path.read_bytes(), path, searcher.embedder.image_size)
               for path in files]
    expected = searcher.outputs(decoded)
    np.testing.assert_array_equal(model.embed(files), expected)
    np.testing.assert_array_equal(model.embed([Image.open(path) for path in files]), expected)
    arrays = [np.asarray(image) for image in decoded]
    np.testing.assert_array_equal(model.embed(arrays), expected)
    same_size = [i for i, a in enumerate(arrays) if a.shape == arrays[0].shape]
    assert 1 < len(same_size) < len(arrays)  # (outputs depend on the batch to the last bit)
    np.testing.assert_array_equal(model.embed(np.stack([arrays[i] for i in same_size])),
                                  searcher.outputs([decoded[i] for i in same_size]))
    np.testing.assert_array_equal(model.embed(files[0]), searcher.outputs(decoded[:1]))
    assert model.embed([]).shape == (0, model.dim)


def test_bad_images_and_checkpoints_are_refused_in_one_line(
        models: dict[str, ImageEmbedder], tmp_path: Path) -> None:
    model = models["hash"]
    with pytest.raises(DataError, match=r"must be \(H, W, 3\) uint8 RGB, not float64"):
        model.embed(np.zeros((8, 8, 3)))
    with pytest.raises(DataError, match=r"not uint8 of shape \(8, 8\)"):
        model.embed(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"cannot read image .*missing\.png"):
        model.embed(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*text\.png"):
        model.embed(tmp_path / "text.png")
    with pytest.raises(DataError, match="cannot embed 'int' items"):
        model.embed([3])
    with pytest.raises(ConfigError, match=r"none\.pt does not exist"):
        deephash.load(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"bad\.pt"):
        deephash.load(tmp_path / "bad.pt")
