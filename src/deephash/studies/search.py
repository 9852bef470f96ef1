"""``deephash index`` and ``deephash search``: a searchable collection of images.

An index folder holds ``index.npz`` (the retrieval index: packed codes of a hashing
model, or float embeddings) and ``items.npz`` (per row: the image's path, label, and the
class names), plus ``index.json`` naming the checkpoint that produced it. ``search``
embeds a query image with that checkpoint and prints the k nearest images; it can also
save a picture of the query beside its results, correct matches framed in green.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.data import open_dataset
from deephash.data.fingerprint import default_cache_root
from deephash.data.transforms import TransformSpec
from deephash.devices import resolve_device
from deephash.errors import ConfigError, DataError
from deephash.features import compute_features, transform_spec
from deephash.fileio import save_json, save_npz
from deephash.hashing.codes import binarize, pack_codes
from deephash.index import create_index, load_index
from deephash.training.checkpoint import load_model
from deephash.training.config import TrainConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel
from deephash.training.trainer import embed

log = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    checkpoint: str = field(default="", metadata={"help": "a trained model's best.pt"})
    data_dir: str | None = field(default=None, metadata={
        "help": "images to index (an image folder with train/ and test/, or CIFAR-10)"})
    out: str = field(default="runs/index", metadata={"help": "index folder to write"})
    index: str = field(default="auto", metadata={
        "help": "BFlat-numpy, BFlat, BHNSW<M>, BMIH<h> (codes) or Flat (embeddings); auto: "
                "BFlat for a hashing model, Flat for an embedding model"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    cache_dir: str | None = field(default=None, metadata={"help": "feature cache folder"})


@dataclass
class SearchConfig:
    image: str = field(default="", metadata={"positional": True, "help": "query image file"})
    index: str = field(default="runs/index", metadata={"help": "index folder"})
    k: int = field(default=10, metadata={"flag": "-k", "help": "results to return"})
    show: str | None = field(default=None, metadata={
        "help": "save a PNG of the query beside its results"})
    label: str | None = field(default=None, metadata={
        "help": "the query's class (default: its folder name, if that is a class)"})


def _views(train_config: TrainConfig) -> tuple[str, ...]:
    """The image views whose embeddings are averaged, as in the model's evaluation."""
    return ("identity", "hflip") if train_config.training.test_time_flip else ("identity",)


def _vectors(model: EmbeddingModel, features: list[np.ndarray], codes: bool) -> np.ndarray:
    """Packed codes or float32 embeddings of ``(N, D)`` features, ``features[1]`` being the
    mirrored view when the model is evaluated with test-time flip (as in training)."""
    inputs = FeatureInputs(features[0], features[1] if len(features) > 1 else None, seed=0,
                           augment=False)
    out = embed(model, inputs, np.arange(len(features[0])), torch.device("cpu"),
                test_time_flip=len(features) > 1)
    return pack_codes(binarize(out)) if codes else out


def build_index(config: IndexConfig) -> dict[str, Any]:
    """Embed every image of ``data_dir`` with the checkpoint and index the results."""
    if not config.checkpoint:
        raise ConfigError("--checkpoint is required (a trained run's best.pt)")
    train_config, model = load_model(Path(config.checkpoint))
    if model.backbone is not None:
        raise ConfigError("indexing supports frozen-mode models (a head on cached features)")
    dataset = open_dataset(config.data_dir, "auto")
    backbone = create_backbone(train_config.backbone.name, train_config.backbone.weights)
    spec = transform_spec(backbone, train_config.backbone.image_size)
    cache = Path(config.cache_dir).expanduser() if config.cache_dir else None
    features = [compute_features(dataset, backbone, dataclasses.replace(spec, view=view),
                                 cache_dir=cache or default_cache_root(),
                                 device=resolve_device(config.device))
                for view in _views(train_config)]
    codes = train_config.training.codes
    vectors = _vectors(model, features, codes)
    dim = train_config.training.embedding_dim
    if config.index == "auto":
        config = dataclasses.replace(config, index="BFlat" if codes else "Flat")
    if codes == (config.index == "Flat"):
        raise ConfigError(f"index {config.index} does not fit a "
                          f"{'hashing' if codes else 'float embedding'} model; use "
                          f"{'BFlat' if codes else 'Flat'}")
    index = create_index(config.index, dim)
    index.add(vectors, ids=np.arange(len(dataset)))
    out = Path(config.out)
    index.save(out / "index.npz")
    save_npz(out / "items.npz", paths=np.array([dataset.describe(i) for i in range(len(dataset))]),
             labels=dataset.labels, classes=np.array(dataset.classes))
    info = {"checkpoint": str(Path(config.checkpoint).resolve()), "index": config.index,
            "codes": codes, "dim": dim, "n_items": len(dataset), "data": dataset.name,
            "spec": spec.describe()}
    save_json(out / "index.json", info)
    log.info("indexed %d images into %s (%s)", len(dataset), out, config.index)
    return info


def search_image(config: SearchConfig) -> list[dict[str, Any]]:
    """Print (and return) the k nearest indexed images to ``config.image``."""
    if not config.image:
        raise ConfigError("give a query image: deephash search IMAGE --index FOLDER")
    folder = Path(config.index)
    try:
        info = json.loads((folder / "index.json").read_text())
        items = np.load(folder / "items.npz", allow_pickle=False)
    except OSError:
        raise ConfigError(f"{folder} is not an index folder (run deephash index)") from None
    from PIL import Image, UnidentifiedImageError

    from deephash.data.dataset import to_rgb

    try:
        with Image.open(config.image) as image:
            query = to_rgb(image)
    except (OSError, UnidentifiedImageError):
        raise DataError(f"cannot read image {config.image}") from None
    train_config, model = load_model(Path(info["checkpoint"]))
    backbone = create_backbone(train_config.backbone.name, train_config.backbone.weights)
    spec = info["spec"]
    features = []
    for view in _views(train_config):
        transform = TransformSpec(spec["image_size"], tuple(spec["mean"]), tuple(spec["std"]),
                                  spec["interpolation"], view).build()
        with torch.inference_mode():
            features.append(backbone(transform(query)[None]).numpy())
    vector = _vectors(model, features, info["codes"])
    result = load_index(folder / "index.npz").search(vector, config.k)
    classes = [str(c) for c in items["classes"]]
    label = config.label or Path(config.image).parent.name
    rows = []
    print(f"{'rank':>4}  {'distance':>8}  {'label':<12}  path")
    for rank, (distance, item) in enumerate(zip(result.distances[0], result.ids[0],
                                                strict=True), start=1):
        if item < 0:
            break
        row = {"rank": rank, "distance": float(distance), "label": classes[items["labels"][item]],
               "path": str(items["paths"][item])}
        rows.append(row)
        print(f"{rank:>4}  {row['distance']:>8.3g}  {row['label']:<12}  {row['path']}")
    if config.show:
        from deephash.viz.search import plot_results

        plot_results(query, rows, label if label in classes else None, Path(config.show))
    return rows
